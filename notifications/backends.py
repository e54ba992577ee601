"""How pushes go out: the setting PUSH_BACKEND chooses one.

* `fcm`: Firebase Cloud Messaging through the firebase-admin SDK, with the service-account
  credential FCM_CREDENTIALS_FILE (or Google's application default credentials);
* `inbox`: no push at all; notifications are only stored, and shown in the admin and
  through GET /api/v1/notifications/ (the default when no credential is configured).

firebase-admin is imported only by the `fcm` backend, when it is first used, so the web
process and the other worker pools never load it.
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

FCM_MAX_BATCH = 500  # messaging.send_each takes at most 500 messages


@dataclass(frozen=True)
class Push:
    token: str
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    urgent: bool = False  # high priority: wakes the phone (fault alerts)
    # The same for every push of one notification: a phone shows a second copy (a resend
    # after a crash) in place of the first, not beside it.
    collapse_id: str = ""


class Outcome(enum.StrEnum):
    SENT = "sent"
    UNREGISTERED = "unregistered"  # the token is dead: deactivate the device
    REJECTED = "rejected"  # this push can never succeed as it is (e.g. INVALID_ARGUMENT): drop it
    RETRY = "retry"  # quota, 5xx, network: try again later


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    message_id: str = ""
    error: str = ""


class PushBackend(Protocol):
    name: str
    delivers_to_devices: bool

    def send(self, pushes: list[Push]) -> list[PushResult]:
        """One result per push, in order. Never raises for a failed push."""

    def warm_up(self) -> None:
        """Prepare for the first push (load credentials, fetch a token), so it is fast."""


class InboxBackend:
    """Notifications are stored only; nothing leaves the system."""

    name = "inbox"
    delivers_to_devices = False

    def send(self, pushes: list[Push]) -> list[PushResult]:
        raise RuntimeError("the inbox backend sends no pushes")

    def warm_up(self) -> None:
        pass


class FcmBackend:
    """Firebase Cloud Messaging v1 through firebase-admin (`messaging.send_each`)."""

    name = "fcm"
    delivers_to_devices = True
    _apps = itertools.count(1)

    def __init__(self, *, credentials_file: str, endpoint_url: str, timeout: float):
        import firebase_admin
        from firebase_admin import credentials

        credential = credentials.Certificate(credentials_file) if credentials_file else credentials.ApplicationDefault()
        self.app = firebase_admin.initialize_app(
            credential, options={"httpTimeout": timeout}, name=f"fitness-push-{next(self._apps)}"
        )
        self._bind_endpoint(endpoint_url)

    def _bind_endpoint(self, endpoint_url: str) -> None:
        # firebase-admin has no option for the FCM endpoint: its messaging service reads the
        # class attribute FCM_URL when it is created (on first use of an app). We create
        # ours now, with our endpoint (an emulator, or the local server of the tests), and
        # restore the attribute so other apps in the process are not affected.
        from firebase_admin import messaging

        default_url = messaging._MessagingService.FCM_URL
        if endpoint_url:
            messaging._MessagingService.FCM_URL = endpoint_url.rstrip("/") + "/v1/projects/{0}/messages:send"
        try:
            messaging._get_messaging_service(self.app)
        finally:
            messaging._MessagingService.FCM_URL = default_url

    def warm_up(self) -> None:
        # The OAuth token is fetched once and cached by the credential (about an hour);
        # fetching it now keeps it off the first alert's path.
        self.app.credential.get_access_token()

    def send(self, pushes: list[Push]) -> list[PushResult]:
        results: list[PushResult] = []
        for start in range(0, len(pushes), FCM_MAX_BATCH):
            results.extend(self._send_batch(pushes[start:start + FCM_MAX_BATCH]))
        return results

    def _send_batch(self, pushes: list[Push]) -> list[PushResult]:
        from firebase_admin import messaging

        try:
            response = messaging.send_each([self._message(push) for push in pushes], app=self.app)
        except Exception as exc:  # the whole batch failed (credential refresh, …): retry it all
            logger.warning("FCM batch of %s failed: %s: %s", len(pushes), exc.__class__.__name__, exc)
            return [PushResult(Outcome.RETRY, error=_describe(exc))] * len(pushes)
        return [self._result(item) for item in response.responses]

    @staticmethod
    def _message(push: Push):
        from firebase_admin import messaging

        # Device tokens are FCM registration tokens, which the v1 API addresses as `token`
        # (firebase-admin 7.7 deprecates the argument in favour of installation ids).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return messaging.Message(
                token=push.token,
                notification=messaging.Notification(title=push.title, body=push.body),
                data=push.data,
                android=messaging.AndroidConfig(
                    priority="high" if push.urgent else "normal", collapse_key=push.collapse_id or None,
                    notification=messaging.AndroidNotification(tag=push.collapse_id or None),
                ),
                apns=messaging.APNSConfig(headers={
                    "apns-priority": "10" if push.urgent else "5",
                    **({"apns-collapse-id": push.collapse_id} if push.collapse_id else {}),
                }),
            )

    @staticmethod
    def _result(item) -> PushResult:
        from firebase_admin import exceptions, messaging

        if item.success:
            return PushResult(Outcome.SENT, message_id=item.message_id)
        exc = item.exception
        if isinstance(exc, messaging.UnregisteredError):
            return PushResult(Outcome.UNREGISTERED, error=_describe(exc))
        transient = (
            exceptions.ResourceExhaustedError,  # QUOTA_EXCEEDED
            exceptions.UnavailableError,
            exceptions.InternalError,
            exceptions.DeadlineExceededError,
            exceptions.UnknownError,
        )
        if isinstance(exc, transient):
            return PushResult(Outcome.RETRY, error=_describe(exc))
        return PushResult(Outcome.REJECTED, error=_describe(exc))


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{exc.__class__.__name__}{f' ({code})' if code else ''}: {exc}"[:2000]


def push_backend() -> PushBackend:
    """The configured backend (one per process and configuration)."""
    return _backend(settings.PUSH_BACKEND, settings.FCM_CREDENTIALS_FILE, settings.FCM_ENDPOINT_URL,
                    settings.PUSH_TIMEOUT_SECONDS)


@functools.cache
def _backend(name: str, credentials_file: str, endpoint_url: str, timeout: float) -> PushBackend:
    if name == "inbox":
        return InboxBackend()
    if name == "fcm":
        return FcmBackend(credentials_file=credentials_file, endpoint_url=endpoint_url, timeout=timeout)
    raise ImproperlyConfigured(f"PUSH_BACKEND must be 'fcm' or 'inbox', not {name!r}")
