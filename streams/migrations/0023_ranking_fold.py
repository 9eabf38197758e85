# Placeholder in this session's migration chain: filled by the area that needs it, else removed.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0022_people_avatars")]
    operations = []
