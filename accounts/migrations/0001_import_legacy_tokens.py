"""Copy DRF's plaintext tokens into knox's table, hashed, each good for one more TOKEN_TTL.

The mobile app keeps its token and it keeps working until that sunset; then it signs in
again. The plaintext rows stay for the web processes of the previous release, which serve
until the deploy has rolled out; `manage.py import_legacy_tokens` then copies what they issued
meanwhile and deletes the plaintext rows (accounts.services.legacy_tokens_import).
"""

from django.db import migrations


def import_legacy_tokens(apps, schema_editor):
    from accounts.services import legacy_tokens_import

    legacy_tokens_import(legacy_model=apps.get_model("authtoken", "Token"),
                         token_model=apps.get_model("knox", "AuthToken"), delete_plaintext=False)


class Migration(migrations.Migration):
    dependencies = [
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        # Backwards: the copies stay (the old release ignores knox's table).
        migrations.RunPython(import_legacy_tokens, migrations.RunPython.noop),
    ]
