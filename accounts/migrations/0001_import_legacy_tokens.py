"""Bring DRF's plaintext tokens into knox's table, hashed, each good for one more TOKEN_TTL.

The mobile app keeps its token and it keeps working until that sunset; then it signs in
again. See accounts.services.legacy_tokens_import (and `manage.py import_legacy_tokens` for
tokens the previous release issued during the deploy).
"""

from django.db import migrations


def import_legacy_tokens(apps, schema_editor):
    from accounts.services import legacy_tokens_import

    legacy_tokens_import(legacy_model=apps.get_model("authtoken", "Token"),
                         token_model=apps.get_model("knox", "AuthToken"))


class Migration(migrations.Migration):
    dependencies = [
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        # Backwards: nothing to undo that can be undone (the plaintext keys are gone by design).
        migrations.RunPython(import_legacy_tokens, migrations.RunPython.noop),
    ]
