from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('streams', '0010_fanout_without_fk_checks'),
    ]

    operations = [
        migrations.AddField(
            model_name='source',
            name='sync_holder',
            field=models.CharField(blank=True, default='', max_length=300),
        ),
        migrations.AddField(
            model_name='source',
            name='sync_lease_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
