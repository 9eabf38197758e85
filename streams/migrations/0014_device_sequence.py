"""Devices in the mesh (issue 16): what a device's seqs Mesh holds (``Device.seq_high`` and
``DeviceSeqRange``), its MQTT base topic and its last will (``Device.mqtt_topic``,
``Device.offline_at``). See streams/devices.py."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0013_sync_change_log")]

    operations = [
        migrations.AddField(model_name="device", name="seq_high", field=models.BigIntegerField(default=0)),
        migrations.AddField(
            model_name="device", name="mqtt_topic", field=models.CharField(blank=True, default="", max_length=200)
        ),
        migrations.AddField(model_name="device", name="offline_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddConstraint(
            model_name="device",
            constraint=models.UniqueConstraint(
                condition=~models.Q(mqtt_topic=""), fields=("mqtt_topic",), name="device_mqtt_topic_unique"
            ),
        ),
        migrations.CreateModel(
            name="DeviceSeqRange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("first", models.BigIntegerField()),
                ("last", models.BigIntegerField()),
                (
                    "device",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="seq_ranges", to="streams.device"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("device", "first"), name="device_seq_range_unique")
                ],
            },
        ),
    ]
