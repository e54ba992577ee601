"""The branch-isolation walk: every admin URL, as one branch owner, shows nothing of another branch.

Two owners each get a branch with a helper, a task with its photo and AI reading, a washer
with telemetry and an open fault, a profile, an offer, a notification (pushed to a device).
Every string in those rows that could show up on a page is a marker: `<tag>-<what>-walk`.
Then, logged in as one owner (and as a staff user without a branch), the walk requests:

* every URL pattern of the project under /admin/, found by walking the URL resolver (so a
  view somebody adds later is walked too), with the ids of both owners' objects put in for
  its parameters: lists, add, change, history, delete, the task photo and confirm views, the
  index and every app index, `r/<content type>/<id>/`, and whatever else is there;
* every list with every query string its page links to (filters, facets, sorting, the date
  hierarchy, as the owner and as a superuser, whose links carry the other branch's ids) and
  with searches for terms that match both owners' rows;
* /admin/autocomplete/ for every relation of every model whose admin can be asked;
* POSTs to the other owner's object URLs, every action of every list with the other owner's
  ids selected, and every add form with the other owner's rows chosen in it;

and checks that no response contains a marker of the other owner, that the other owner's
object URLs end in 403, 404, 405 or the admin's "doesn't exist" redirect to the index (never
a page of theirs), and that the other owner's rows are unchanged at the end.
"""

from __future__ import annotations

import html
import itertools
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.core.files.base import ContentFile
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone

from branches.models import Branch, Helper
from branches.owner_admin import BranchOwnerAccess
from branches.services import branch_offer_publish, branch_profile_update
from messaging.models import OutboxMessage
from monitoring.models import Fault, TelemetryReading
from monitoring.services import equipment_create, telemetry_ingest
from notifications.models import DeviceToken, Notification, PushDelivery
from tasks.models import LaundryTask
from tasks.services import reading_record
from tests import factories
from tests.monitoring.support import reading

pytestmark = pytest.mark.django_db

ADMIN = "/admin/"
MAX_ROWS_PER_MODEL = 3  # besides the owners' own rows, a few others of each model (users, outbox rows ...)


# --- the two worlds ---------------------------------------------------------------------------------------


@dataclass
class World:
    """One owner's branch and everything in it, with the strings that must never leak."""

    tag: str
    owner: object
    markers: tuple[str, ...]
    objects: dict[type, set] = field(default_factory=dict)  # model -> primary keys of this world's rows

    def add(self, *rows) -> None:
        for row in rows:
            self.objects.setdefault(type(row), set()).add(row.pk)

    def owns(self, model, pk) -> bool:
        return str(pk) in {str(key) for key in self.objects.get(model, ())}


def build_world(tag: str) -> World:
    before = set(OutboxMessage.objects.values_list("pk", flat=True))
    owner = factories.user(f"{tag}-owner-walk", staff=True)
    branch = Branch.objects.create(code=f"{tag}-code-walk", name=f"{tag}-branch-walk", owner=owner,
                                   address=f"{tag}-address-walk")
    helper_user = factories.helper(branch, username=f"{tag}-helper-walk")

    photo = factories.photo_bytes()
    task = LaundryTask(branch=branch, helper=helper_user, note=f"{tag}-note-walk", photo_sha256="0" * 64,
                       photo_size=len(photo), photo_content_type="image/jpeg")
    task.photo.save("photo.jpg", ContentFile(photo), save=False)
    task.save()
    reading_record(task_id=task.pk, labels={"garment": "shirt", "condition": "stained"},
                   confidences={"garment": 0.93, "condition": 0.71}, model_version=f"{tag}-model-walk",
                   inference_ms=12.0)
    task.refresh_from_db()

    washer, _ = equipment_create(branch=branch, kind="washer", name=f"{tag}-washer-walk")
    now = timezone.now()
    telemetry_ingest(equipment=washer, readings=[
        reading(at=now - timedelta(seconds=20), cycle_state="washing"),
        reading(at=now - timedelta(seconds=10), error_code=f"{tag}-fault-walk", cycle_state="spinning"),
    ])
    fault = Fault.objects.get(equipment=washer)  # "Error code <tag>-fault-walk reported"

    profile = branch_profile_update(branch=branch, price_level=2, dry_cleaning=True, latitude=37.5, longitude=127.0)
    offer = branch_offer_publish(branch=branch, title=f"{tag}-offer-walk", body=f"{tag}-offer-body-walk",
                                 published_by=owner)
    device = DeviceToken.objects.create(user=owner, token=f"{tag}-device-walk", platform=DeviceToken.Platform.WEB)
    notification = Notification.objects.create(
        recipient=owner, kind=Notification.Kind.EQUIPMENT_FAULT, key=f"equipment_fault:{fault.pk}",
        event_id=uuid.uuid4(), title=f"{tag}-notification-walk", body=f"{tag}-notification-body-walk",
        data={"fault_id": fault.pk, "equipment": washer.name}, status=Notification.Status.FAILED,
    )
    push = PushDelivery.objects.create(notification=notification, device=device, status=PushDelivery.Status.FAILED,
                                       error=f"{tag}-push-error-walk")

    world = World(tag=tag, owner=owner, markers=(
        owner.username, helper_user.username, branch.name, branch.code, branch.address, task.note, task.photo.name,
        f"{tag}-model-walk", washer.name, fault.message, f"{tag}-fault-walk", offer.title, offer.body, device.token,
        notification.title, notification.body, push.error,
    ))
    world.add(owner, helper_user, branch, Helper.objects.get(user=helper_user), task, task.reading, washer, fault,
              profile, offer, device, notification, push, *TelemetryReading.objects.filter(equipment=washer))
    world.add(*OutboxMessage.objects.exclude(pk__in=before))
    assert all(f"{tag}-" in marker for marker in world.markers if marker != task.photo.name)
    return world


@pytest.fixture
def worlds():
    root = factories.user("walk-root", superuser=True)
    return {tag: build_world(tag) for tag in ("alpha", "bravo")}, root


# --- what the walk finds ---------------------------------------------------------------------------------


PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)")
REGEX_SYNTAX = re.compile(r"[.*+?\[\](){}|\\]")


@dataclass(frozen=True)
class Route:
    """One URL pattern under /admin/: its pieces, and the model admin it belongs to (if any)."""

    pieces: tuple  # literal strings and Param
    model_admin: object | None
    name: str | None


@dataclass(frozen=True)
class Param:
    name: str
    converter: str | None = None
    alternatives: tuple[str, ...] | None = None


def _pieces(pattern) -> list:
    """A pattern's route as literal strings and parameters; a pattern it cannot spell out fails the walk."""
    if isinstance(pattern, RoutePattern):
        route, pieces, end = str(pattern._route), [], 0
        for match in PARAM.finditer(route):
            pieces += [route[end:match.start()], Param(match["name"], match["converter"])]
            end = match.end()
        return [*pieces, route[end:]]
    if isinstance(pattern, RegexPattern):
        regex, pieces, end = pattern._regex.removeprefix("^").removesuffix("$").removesuffix(r"\Z"), [], 0
        for match in GROUP.finditer(regex):
            body = match["body"]
            alternatives = tuple(body.split("|")) if re.fullmatch(r"[\w-]+(\|[\w-]+)*", body) else None
            pieces += [regex[end:match.start()], Param(match["name"], None, alternatives)]
            end = match.end()
        pieces.append(regex[end:])
        for literal in pieces:
            if isinstance(literal, str) and REGEX_SYNTAX.search(literal.replace(r"\/", "/")):
                raise AssertionError(f"the isolation walk cannot spell out the admin URL regex {pattern._regex!r}: "
                                     "teach tests/test_admin_isolation.py how")
        return pieces
    raise AssertionError(f"the isolation walk does not know URL patterns like {pattern!r}")


def admin_routes() -> list[Route]:
    """Every URL pattern of the project whose path starts with /admin/, model admins' own ones included."""
    by_prefix = {f"admin/{model._meta.app_label}/{model._meta.model_name}/": model_admin
                 for model, model_admin in admin.site._registry.items()}
    routes: list[Route] = []

    def visit(patterns, prefix: list, model_admin):
        for pattern in patterns:
            pieces = prefix + _pieces(pattern.pattern)
            text = "".join(piece for piece in pieces if isinstance(piece, str))
            if isinstance(pattern, URLResolver):
                visit(pattern.url_patterns, pieces, by_prefix.get(text, model_admin))
            elif isinstance(pattern, URLPattern) and text.startswith("admin/"):
                routes.append(Route(tuple(pieces), model_admin, pattern.name))

    visit(get_resolver().url_patterns, [], None)
    return routes


@dataclass(frozen=True)
class AdminUrl:
    path: str
    route: Route
    objects: tuple  # (model, pk) put into the path


def _rows(model, worlds) -> list:
    """The primary keys of both worlds' rows of `model` and a few others."""
    owned = [pk for world in worlds for pk in sorted(world.objects.get(model, ()), key=str)]
    others = list(model._default_manager.exclude(pk__in=owned).order_by("pk").values_list("pk", flat=True)
                  [:MAX_ROWS_PER_MODEL])
    return owned + others


def _values(param: Param, model, worlds) -> list[tuple[str, tuple]]:
    """What to put in for a parameter: (text, the (model, pk) it names, if any)."""
    if param.alternatives:
        return [(value, ()) for value in param.alternatives]
    if model is not None and (param.name in ("object_id", "pk", "id") or param.name.endswith("_id")):
        values = [(quote(str(pk)), ((model, pk),)) for pk in _rows(model, worlds)] + [("walk-0", ())]
    else:
        values = [("1", ()), ("walk", ())]
    if param.converter == "int":
        values = [(text, named) for text, named in values if text.isdigit()]
    return values


def expand(route: Route, worlds) -> list[AdminUrl]:
    params = [piece for piece in route.pieces if isinstance(piece, Param)]
    names = {param.name for param in params}
    model = route.model_admin.model if route.model_admin else None
    if {"content_type_id", "object_id"} <= names:  # r/<content type>/<id>/: the ids of that model
        combos = []
        for registered in admin.site._registry:
            content_type = ContentType.objects.get_for_model(registered)
            combos += [{"content_type_id": (str(content_type.pk), ()),
                        "object_id": (quote(str(pk)), ((registered, pk),))} for pk in _rows(registered, worlds)[:4]]
    else:
        combos = [dict(zip([p.name for p in params], choice, strict=True))
                  for choice in itertools.product(*[_values(p, model, worlds) for p in params])]
    urls = []
    for combo in combos:
        text = "".join(piece if isinstance(piece, str) else combo[piece.name][0] for piece in route.pieces)
        named = tuple(itertools.chain.from_iterable(combo[p.name][1] for p in params))
        urls.append(AdminUrl("/" + text, route, named))
    return urls


# --- checks ----------------------------------------------------------------------------------------------


@dataclass
class Walk:
    client: Client
    me: str
    others: list[World]
    problems: list[str] = field(default_factory=list)
    requests: int = 0

    @property
    def markers(self) -> list[str]:
        return [marker for world in self.others for marker in world.markers]

    def is_theirs(self, objects) -> bool:
        return any(world.owns(model, pk) for model, pk in objects for world in self.others)

    def request(self, method: str, path: str, data=None, *, theirs: bool = False):
        self.requests += 1
        call = self.client.get if method == "GET" else self.client.post
        response = call(path, data or {}, follow=True)
        where = f"{method} {path}" + (f" {data}" if data else "")
        if response.status_code >= 500:
            self.problems.append(f"{where}: server error {response.status_code}")
        text = self.text(response) + " ".join(url for url, _ in response.redirect_chain)
        leaked = [marker for marker in self.markers if marker.lower() in text.lower()]
        if leaked:
            self.problems.append(f"{where}: shows {leaked}")
        if theirs and not self.refused(response):
            final = response.redirect_chain[-1][0] if response.redirect_chain else path
            self.problems.append(f"{where}: another branch's object answered {response.status_code} at {final}")
        return response

    @staticmethod
    def text(response) -> str:
        if getattr(response, "streaming", False):
            if not response.get("Content-Type", "").startswith(("text/", "application/json")):
                return ""  # a photo: its bytes carry no markers
            return b"".join(response.streaming_content).decode(errors="replace")
        return response.content.decode(errors="replace")

    @staticmethod
    def refused(response) -> bool:
        if response.status_code in (403, 404, 405):
            return True
        # the admin's "… doesn't exist. Perhaps it was deleted?" redirect, to the index (or to the login page)
        return bool(response.redirect_chain) and response.status_code == 200 and \
            response.redirect_chain[-1][0].split("?")[0] in (ADMIN, f"{ADMIN}login/")


def as_request(user):
    request = RequestFactory().get(ADMIN)
    request.user = user
    return request


def changelist_links(client, path: str) -> set[str]:
    response = client.get(path)
    if response.status_code != 200:
        return set()
    return {html.unescape(match) for match in re.findall(r'href="(\?[^"]*)"', response.content.decode())}


def snapshot(world: World) -> dict:
    """The other owner's rows as they are, and how many rows each owner-scoped admin has for them."""
    rows = {model: serializers.serialize("python", model._default_manager.filter(pk__in=pks).order_by("pk"))
            for model, pks in world.objects.items()}
    counts = {model: model._default_manager.filter(**{model_admin.owner_lookup(): world.owner.pk}).count()
              for model, model_admin in admin.site._registry.items() if isinstance(model_admin, BranchOwnerAccess)}
    return {"rows": rows, "counts": counts}


def _filler(form_field, theirs: list):
    """A value for an add form's field: the other owner's row where it asks for one."""
    from django import forms

    if isinstance(form_field, forms.ModelChoiceField):
        model = form_field.queryset.model
        pks = [pk for world in theirs for pk in world.objects.get(model, ())]
        return str(pks[0]) if pks else None
    if isinstance(form_field, forms.BooleanField):
        return "on"
    if isinstance(form_field, forms.TypedChoiceField | forms.ChoiceField):
        values = [value for value, _ in form_field.choices if value not in ("", None)]
        return str(values[0]) if values else None
    if isinstance(form_field, forms.IntegerField | forms.FloatField | forms.DecimalField):
        return "1"
    if isinstance(form_field, forms.DateTimeField | forms.SplitDateTimeField):
        return None
    return "walk-post"


def walk_admin(client: Client, me, others: list[World], worlds: list[World], root) -> Walk:
    walk = Walk(client, me.username, others)
    client.force_login(me)
    routes = admin_routes()
    names = {route.name for route in routes}
    assert {"index", "app_list", "autocomplete", "view_on_site", "tasks_laundrytask_photo",
            "tasks_laundrytask_confirm", "monitoring_fault_changelist", "branches_branchprofile_change"} <= names

    # 1. every URL under /admin/ with both owners' ids, GET; the other owner's object URLs also POST
    posted = {"_confirm_as_read": "", "_correct_and_confirm": "", "garment": "towel", "condition": "torn",
              "post": "yes", "_save": "Save", "title": "walk-hijack", "name": "walk-hijack", "price_level": "1"}
    for route in routes:
        if route.name == "logout":
            continue  # it would end the walk's session; GET of it only says 405 anyway
        for url in expand(route, worlds):
            theirs = walk.is_theirs(url.objects)
            walk.request("GET", url.path, theirs=theirs)
            if theirs:
                walk.request("POST", url.path, posted, theirs=True)

    # 2. every list: the query strings its pages link to (as me, and as a superuser), searches, facets
    searches = ["walk", *{marker.split("-", 1)[1] for marker in others[0].markers if "-" in marker}]
    for model, model_admin in admin.site._registry.items():
        path = f"{ADMIN}{model._meta.app_label}/{model._meta.model_name}/"
        client.force_login(root)
        queries = changelist_links(client, path) | changelist_links(client, path + "?_facets=True")
        client.force_login(me)
        queries |= changelist_links(client, path)
        queries.add("?_facets=True")
        if model_admin.search_fields:
            queries |= {f"?q={term}" for term in searches} | {"?_facets=True&q=walk"}
        for query in sorted(queries):
            walk.request("GET", path + query)

    # 3. autocomplete: every forward relation of every model whose target has an admin
    for model in apps.get_models():
        for relation in model._meta.get_fields():
            if not (relation.is_relation and relation.concrete and relation.related_model in admin.site._registry):
                continue
            for term in ("", "walk", "branch-walk"):
                response = walk.request("GET", f"{ADMIN}autocomplete/", {
                    "app_label": model._meta.app_label, "model_name": model._meta.model_name,
                    "field_name": relation.name, "term": term,
                })
                if response.status_code == 200:
                    shown = {result["id"] for result in response.json()["results"]}
                    for world in others:
                        if any(world.owns(relation.related_model, pk) for pk in shown):
                            walk.problems.append(f"autocomplete {model.__name__}.{relation.name} lists rows of "
                                                 f"{world.tag}")

    # 4. every action of every list, with the other owner's ids selected; every add form with their rows
    request = as_request(me)
    for model, model_admin in admin.site._registry.items():
        path = f"{ADMIN}{model._meta.app_label}/{model._meta.model_name}/"
        their_ids = [pk for world in others for pk in world.objects.get(model, ())]
        for action in model_admin.get_actions(request):
            walk.request("POST", path, {"action": action, "index": "0", "_selected_action": their_ids or ["0"]})
        if model_admin.has_add_permission(request):
            form = model_admin.get_form(request)()
            data = {name: value for name, form_field in form.fields.items()
                    if (value := _filler(form_field, others)) is not None}
            walk.request("POST", path + "add/", data)
    return walk


@pytest.mark.parametrize("me", ["alpha", "bravo", "no-branch"])
def test_an_owner_sees_nothing_of_another_branch_anywhere_in_the_admin(client, worlds, me):
    by_tag, root = worlds
    everyone = list(by_tag.values())
    if me == "no-branch":
        user, others = factories.user("staff-walk", staff=True), everyone
    else:
        user, others = by_tag[me].owner, [world for world in everyone if world.tag != me]
    before = [snapshot(world) for world in others]
    client.raise_request_exception = False  # a server error is a finding of the walk, with its URL

    walk = walk_admin(client, user, others, everyone, root)

    assert walk.requests > 300, "the walk found too few admin URLs: is the enumeration broken?"
    assert walk.problems == [], f"{len(walk.problems)} problem(s) in {walk.requests} requests:\n" + "\n".join(
        walk.problems[:60])
    assert [snapshot(world) for world in others] == before, "a request as another user changed these rows"


def test_the_walk_itself_sees_each_owners_markers_in_their_own_pages(client, worlds):
    """The markers are real: the owner's own pages do show them (else the walk would prove nothing)."""
    by_tag, _ = worlds
    alpha = by_tag["alpha"]
    client.force_login(alpha.owner)
    task = LaundryTask.objects.get(pk=next(iter(alpha.objects[LaundryTask])))
    pages = "".join(client.get(path).content.decode() for path in (
        f"{ADMIN}tasks/laundrytask/", f"{ADMIN}tasks/laundrytask/{task.pk}/change/", f"{ADMIN}monitoring/fault/",
        f"{ADMIN}monitoring/equipment/", f"{ADMIN}branches/branchoffer/", f"{ADMIN}notifications/notification/",
        f"{ADMIN}monitoring/telemetryreading/", f"{ADMIN}branches/branch/",
    ))
    for marker in ("alpha-branch-walk", "alpha-note-walk", "alpha-model-walk", "alpha-washer-walk",
                   "Error code alpha-fault-walk reported", "alpha-offer-walk", "alpha-notification-walk",
                   "alpha-helper-walk"):
        assert marker in pages, marker
