from django.db import migrations


def create_everyone(apps, schema_editor):
    AclGroup = apps.get_model("afe", "AclGroup")
    AclGroup.objects.get_or_create(
        name="Everyone", defaults={"description": "Every user and every host in no other group"}
    )


class Migration(migrations.Migration):
    dependencies = [("afe", "0001_initial")]
    operations = [migrations.RunPython(create_everyone, migrations.RunPython.noop)]
