"""Django settings of the pretix-lab image: pretix's own settings plus one lab-specific override.

pretix hard-codes Django's SMTP backend and has no config key to choose another. The lab must never send
real mail, and a refused SMTP connection is not free either (pretix retries each mail five times), so mail
goes to Django's dummy backend unless PRETIX_LAB_EMAIL_BACKEND names another backend (dotted path;
"django.core.mail.backends.smtp.EmailBackend" restores pretix's default and the [mail] host/port apply).
"""

import os

from pretix.settings import *  # noqa: F401,F403

EMAIL_BACKEND = os.environ.get("PRETIX_LAB_EMAIL_BACKEND") or "django.core.mail.backends.dummy.EmailBackend"
