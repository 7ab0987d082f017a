"""Writes of the profiles app: the declared profile, inferred interests, their erasure.

Public API (keyword-only, one transaction each, nothing written on error):

- `declared_update(*, user, changes) -> DeclaredProfile`: set some declared fields (a partial
  update; an empty value clears the field). Each field is accepted only while its purpose is
  granted (`PurposeNotGranted`); bad values raise `ProfileInputError` with a message per field.
- `page_view_record(*, subject, site, themes, viewed_at, client_id="") -> list[str]`: fold one
  page view into the subject's interests, only while `personalisation-browsing` is granted for
  that subject (`PurposeNotGranted`, nothing stored). Themes the resident said they are not
  interested in are skipped. Returns the themes counted. The raw view is never kept.
- `interest_correct(*, subject, theme)` ("not interested"; wins over inference from then on),
  `interest_correction_remove(*, subject, theme)`, `interest_delete(*, subject, theme)`,
  `interests_delete_all(*, subject)`.
- `inference_settings_update(*, half_life_days, acting_user)`: the DPO's half-life.
- `declared_erase(subject, purpose_code)`, `interests_erase(subject)`: the consent.purpose_data
  holders, run by consent in the transaction of the event that ends (or restarts) a grant;
  `declared_held(subject)`, `interests_held(subject)`: their `held` expressions (whether
  anything is held at all), asked first by a single decision.
- `browser_interests_link(browser_hash, user)`: the browser-link listener: a browser's
  interests join the account once the browser proved it is the resident's.
- `profiles_maintain(*, now=None) -> dict`: erase what is no longer granted (expired consents,
  material notice changes), faded interests, and sources older than the purpose's retention.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import JSONField, Q
from django.utils import timezone

from consent.gate import consent_granted_many_for_subject, consent_is_granted_for_subject, granted_exists
from consent.purpose_data import DataSubject
from consent.selectors import browser_account_id, purpose_by_code
from consent.services import browser_id_hash, browser_subject_lock
from identity.audit import audit_log
from identity.models import User
from profiles import decay, taxonomy
from profiles.models import DeclaredProfile, InferenceSettings, Interest, InterestCorrection

log = logging.getLogger(__name__)

MAX_THEMES_PER_VIEW = 5
MAX_DECLARED_THEMES = len(taxonomy.themes())
# A page view may be delivered a little late, never from the future (clock skew aside).
CLOCK_SKEW = timedelta(minutes=5)
MAX_VIEW_AGE = timedelta(days=7)
# A host name (letters, digits, hyphens, dots; single-label names such as an intranet host too).
_SITE = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
HALF_LIFE_DAYS_RANGE = (1, 365)


class ProfileInputError(ValueError):
    """Bad input; `errors` maps each field to a readable message. Nothing was written."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class PurposeNotGranted(PermissionError):
    """The purpose these data belong to is not granted for this subject: nothing was stored."""

    def __init__(self, purposes: list[str], fields: list[str] | None = None) -> None:
        super().__init__(f"not granted: {', '.join(purposes)}")
        self.purposes = purposes
        self.fields = fields or []


def subject_of(user: User) -> DataSubject:
    return DataSubject(user_id=user.pk)


def subject_of_browser(browser_id: str) -> DataSubject:
    """Whose data a browser's requests concern: the account it was attached to with its proof
    (consent.services.subject_link_browser: its interests joined the account then, and its
    later page views are the account's, under the account's consent), else the browser."""
    browser_hash = browser_id_hash(browser_id)
    account_id = browser_account_id(browser_hash=browser_hash)
    if account_id is not None:
        return DataSubject(user_id=account_id)
    return DataSubject(browser_hash=browser_hash)


def _subject_filter(subject: DataSubject) -> Q:
    if subject.user_id is not None:
        return Q(user_id=subject.user_id)
    return Q(user__isnull=True, browser_hash=subject.browser_hash)


def _subject_fields(subject: DataSubject) -> dict[str, Any]:
    if subject.user_id is not None:
        return {"user_id": subject.user_id, "browser_hash": ""}
    return {"user_id": None, "browser_hash": subject.browser_hash}


# --- Declared profile --------------------------------------------------------------------------


def _theme_list(value: Any, field: str, errors: dict[str, str]) -> list[str] | None:
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors[field] = "must be a list of theme codes"
        return None
    unknown = [item for item in value if not taxonomy.is_theme(item)]
    if unknown:
        errors[field] = f"unknown theme(s): {', '.join(sorted(set(unknown)))[:200]}"
        return None
    return taxonomy.current_theme_codes(value)


def _choice(value: Any, allowed: dict[str, Any] | set[str], field: str, errors: dict[str, str]) -> str | None:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value not in allowed:
        errors[field] = f"must be one of: {', '.join(sorted(allowed))}"
        return None
    return value


def _commune(value: Any, errors: dict[str, str]) -> str | None:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or taxonomy.commune(value) is None:
        errors["commune"] = "unknown commune: give the INSEE code of one of the 24 communes of the metropolis"
        return None
    return value


def _accessibility(value: Any, errors: dict[str, str]) -> list[str] | None:
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors["accessibility"] = "must be a list of accessibility preference codes"
        return None
    unknown = sorted(set(value) - set(taxonomy.ACCESSIBILITY))
    if unknown:
        errors["accessibility"] = f"unknown preference(s): {', '.join(unknown)[:200]}"
        return None
    return taxonomy.accessibility_codes(value)


def declared_clean(changes: Any, *, current: DeclaredProfile | None = None) -> dict[str, Any]:
    """Validated values of `changes` (a partial update), or ProfileInputError."""
    if not isinstance(changes, dict):
        raise ProfileInputError({"non_field": "expected an object of declared fields"})
    errors: dict[str, str] = {}
    for name in changes:
        if name not in taxonomy.FIELD_PURPOSES:
            errors[str(name)[:64]] = "unknown field"
    cleaned: dict[str, Any] = {}
    readers = {
        "commune": lambda v: _commune(v, errors),
        "themes": lambda v: _theme_list(v, "themes", errors),
        "notification_themes": lambda v: _theme_list(v, "notification_themes", errors),
        "language": lambda v: _choice(v, taxonomy.PORTAL_LANGUAGES, "language", errors),
        "accessibility": lambda v: _accessibility(v, errors),
        "notification_frequency": lambda v: _choice(
            v, taxonomy.NOTIFICATION_FREQUENCIES, "notification_frequency", errors
        ),
    }
    for name, reader in readers.items():
        if name in changes:
            value = reader(changes[name])
            if value is not None:
                cleaned[name] = value
    commune = cleaned.get("commune", current.commune if current else "")
    if "quartier" in changes:
        value = changes["quartier"]
        if value in (None, ""):
            cleaned["quartier"] = ""
        elif not isinstance(value, str) or taxonomy.quartier_by_code(commune, value) is None:
            errors["quartier"] = "unknown quartier for this commune"
        else:
            cleaned["quartier"] = value
    elif (
        "commune" in cleaned
        and current is not None
        and current.quartier
        and taxonomy.quartier_by_code(commune, current.quartier) is None
    ):
        cleaned["quartier"] = ""  # the old quartier belongs to the old commune
    if errors:
        raise ProfileInputError(errors)
    return cleaned


def declared_update(*, user: User, changes: dict[str, Any]) -> DeclaredProfile:
    """Set the declared fields in `changes` (partial); each only while its purpose is granted."""
    with transaction.atomic():
        # One update of a resident's profile at a time: two first updates (a double click, two
        # tabs) would both find no row and both insert one (an IntegrityError, a 500 at the API).
        list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        profile = DeclaredProfile.objects.select_for_update().filter(user_id=user.pk).first()
        cleaned = declared_clean(changes, current=profile)
        subject = subject_of(user)
        needed = sorted({taxonomy.FIELD_PURPOSES[name] for name, value in cleaned.items() if value})
        granted = consent_granted_many_for_subject(subject=subject, purpose_codes=needed)  # one statement
        refused = [code for code in needed if not granted[code]]
        if refused:
            fields = sorted(n for n, v in cleaned.items() if v and taxonomy.FIELD_PURPOSES[n] in refused)
            raise PurposeNotGranted(refused, fields)
        if profile is None:
            profile = DeclaredProfile(user_id=user.pk, taxonomy_version=taxonomy.taxonomy().version)
        changed = [name for name, value in cleaned.items() if getattr(profile, name) != value]
        for name, value in cleaned.items():
            setattr(profile, name, value)
        if not changed:
            # Nothing new: no write, no audit row, and no empty row for a resident who never
            # declared anything (clearing empty fields, even with the purpose not granted).
            return profile
        profile.taxonomy_version = taxonomy.taxonomy().version
        profile.updated_at = timezone.now()
        profile.save()
        audit_log(
            event="profile.declared_updated", subject_user=user, acting_user=user, data={"fields": changed}
        )
    return profile


def declared_erase(subject: DataSubject, purpose_code: str) -> dict[str, Any]:
    """consent.purpose_data holder: clear the declared fields kept under `purpose_code`."""
    if subject.user_id is None or not _declared_exists(subject.user_id):
        return {}
    profile = DeclaredProfile.objects.select_for_update().filter(user_id=subject.user_id).first()
    if profile is None:
        return {}
    erased = []
    for name in taxonomy.fields_of(purpose_code):
        if getattr(profile, name):
            erased.append(name)
            setattr(profile, name, [] if isinstance(getattr(profile, name), list) else "")
    if not erased:
        return {}
    if not any(getattr(profile, name) for name in taxonomy.DECLARED_FIELDS):
        profile.delete()
    else:
        profile.updated_at = timezone.now()
        profile.save()
    return {"fields": erased}


def _declared_exists(user_id: Any) -> bool:
    """Whether the resident has a declared profile: one plain statement (most residents who
    withdraw a consent have none), before the locked read of the profile to clear."""
    with connection.cursor() as cursor:
        cursor.execute(_DECLARED_EXISTS_SQL, [_user_id_value(user_id)])
        return cursor.fetchone() is not None


_DECLARED_EXISTS_SQL = f"SELECT 1 FROM {DeclaredProfile._meta.db_table} WHERE user_id = %s"  # noqa: S608


def _user_id_value(user_id: Any) -> Any:
    return User._meta.pk.get_db_prep_value(user_id, connection)


def declared_erase_many(subject: DataSubject, purpose_codes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """consent.purpose_data group eraser (a batch of decisions): the declared fields of every
    purpose in `purpose_codes` cleared at once, with what `declared_erase` of each code in turn
    leaves and records ({code: {"fields": [...]}}; the profile deleted when nothing is left).
    For all the codes at once: one read of the profile's row (which fields hold a value, whether
    the others are empty), and only when something goes the same read locked, then one UPDATE
    or DELETE of that row."""
    if subject.user_id is None or not purpose_codes:
        return {}
    fields = {code: taxonomy.fields_of(code) for code in purpose_codes}
    cleared = tuple(name for code in purpose_codes for name in fields[code])
    kept = tuple(name for name in taxonomy.DECLARED_FIELDS if name not in cleared)
    lock = connection.features.has_select_for_update
    select, update = _declared_erase_many_sql(cleared, kept)
    user_id = _user_id_value(subject.user_id)
    with connection.cursor() as cursor:
        # Most residents who end these purposes hold nothing under them: one plain read says so.
        # Otherwise the row is read again, locked (a concurrent edit of the profile is then seen
        # before anything is cleared or the profile deleted), as declared_erase does.
        for locked in (False, True) if lock else (True,):
            cursor.execute(select + (" FOR UPDATE" if locked and lock else ""), [user_id])
            row = cursor.fetchone()
            if row is None or not any(row[1:-1]):
                return {}
        profile_id, *held_flags, others_empty = row
        held = dict(zip(cleared, held_flags, strict=True))
        if others_empty:
            cursor.execute(f"DELETE FROM {DeclaredProfile._meta.db_table} WHERE id = %s", [profile_id])  # noqa: S608
        else:
            cursor.execute(update, [timezone.now(), profile_id])
    summaries: dict[str, dict[str, Any]] = {}
    for code in purpose_codes:
        erased = [name for name in fields[code] if held[name]]
        if erased:
            summaries[code] = {"fields": erased}
    return summaries


def _held_sql(name: str) -> str:
    """Whether declared field `name` holds a value (Python's truth of the stored value, as
    declared_erase tests it): a non-empty string, or JSON other than null, [], {}, "", false, 0."""
    if isinstance(DeclaredProfile._meta.get_field(name), JSONField):
        return f"coalesce({name}, 'null') NOT IN ('null', '[]', '{{}}', '\"\"', 'false', '0')"
    return f"coalesce({name}, '') <> ''"


@functools.cache
def _declared_erase_many_sql(cleared: tuple[str, ...], kept: tuple[str, ...]) -> tuple[str, str]:
    """The read (id, whether each cleared field holds a value, whether every kept field is
    empty) and the UPDATE that clears the fields (JSON lists to [], text to '')."""
    table = DeclaredProfile._meta.db_table
    flags = ", ".join(f"({_held_sql(name)})" for name in cleared)
    empty = " AND ".join(f"NOT ({_held_sql(name)})" for name in kept) or "true"
    values = ", ".join(
        f"{name} = " + ("'[]'" if isinstance(DeclaredProfile._meta.get_field(name), JSONField) else "''")
        for name in cleared
    )
    return (
        f"SELECT id, {flags}, ({empty}) FROM {table} WHERE user_id = %s",  # noqa: S608
        f"UPDATE {table} SET {values}, updated_at = %s WHERE id = %s",  # noqa: S608
    )


def declared_held(subject: DataSubject) -> tuple[str, list[Any]]:
    """consent.purpose_data `held` of the declared-field holders: whether the resident has a
    declared profile at all (declared_erase's own first question); a browser holds none."""
    if subject.user_id is None:
        return "1 = 0", []
    return f"EXISTS ({_DECLARED_EXISTS_SQL})", [_user_id_value(subject.user_id)]


def declared_erase_holder(purpose_code: str) -> Any:
    def erase(subject: DataSubject) -> dict[str, Any]:
        return declared_erase(subject, purpose_code)

    return erase


# --- Inferred interests ------------------------------------------------------------------------


def half_life() -> timedelta:
    row = InferenceSettings.objects.filter(pk=1).values_list("half_life_days", flat=True).first()
    return timedelta(days=row or InferenceSettings._meta.get_field("half_life_days").default)


def inference_settings_update(*, half_life_days: Any, acting_user: User) -> InferenceSettings:
    low, high = HALF_LIFE_DAYS_RANGE
    if (
        isinstance(half_life_days, bool)
        or not isinstance(half_life_days, int)
        or not low <= half_life_days <= high
    ):
        raise ProfileInputError({"half_life_days": f"a whole number of days from {low} to {high}"})
    with transaction.atomic():
        settings_row, _created = InferenceSettings.objects.select_for_update().get_or_create(pk=1)
        before = settings_row.half_life_days
        settings_row.half_life_days = half_life_days
        settings_row.updated_at = timezone.now()
        settings_row.updated_by = acting_user
        settings_row.save()
        audit_log(
            event="profiles.half_life_changed",
            acting_user=acting_user,
            data={"before_days": before, "after_days": half_life_days},
        )
    return settings_row


def page_view_clean(
    *, site: Any, themes: Any, viewed_at: Any, now: datetime
) -> tuple[str, list[str], datetime]:
    errors: dict[str, str] = {}
    host = site.strip().lower() if isinstance(site, str) else ""
    if not _SITE.match(host):
        errors["site"] = "a host name, such as www.nantes.fr"
    codes: list[str] = []
    if not isinstance(themes, list) or not themes or len(themes) > MAX_THEMES_PER_VIEW:
        errors["themes"] = f"a list of 1 to {MAX_THEMES_PER_VIEW} theme codes"
    elif not all(taxonomy.is_theme(item) for item in themes):
        errors["themes"] = "unknown theme code(s)"
    else:
        codes = taxonomy.current_theme_codes(themes)
    if not isinstance(viewed_at, datetime) or timezone.is_naive(viewed_at):
        errors["viewed_at"] = "a date and time with its time zone"
    elif viewed_at > now + CLOCK_SKEW or viewed_at < now - MAX_VIEW_AGE:
        errors["viewed_at"] = "not in the future, and at most 7 days ago"
    if errors:
        raise ProfileInputError(errors)
    # Kept in UTC: sources compare and trim their ISO 8601 stamps as strings, which orders
    # instants only when every stamp has the same offset (a partner may send +02:00).
    return host, codes, viewed_at.astimezone(UTC)


def _fold_view(interest: Interest, site: str, viewed_at: datetime, life: timedelta) -> None:
    interest.score, interest.score_at = decay.add_view(interest.score, interest.score_at, viewed_at, life)
    interest.views += 1
    interest.first_seen_at = min(interest.first_seen_at, viewed_at)
    interest.last_seen_at = max(interest.last_seen_at, viewed_at)
    stamp = viewed_at.isoformat()
    source = interest.sources.get(site)
    if source is None:
        interest.sources[site] = {"views": 1, "first": stamp, "last": stamp}
    else:
        source["views"] += 1
        source["first"] = min(source["first"], stamp)
        source["last"] = max(source["last"], stamp)


def page_view_record(
    *, subject: DataSubject, site: Any, themes: Any, viewed_at: Any, now: datetime | None = None
) -> list[str]:
    """Fold one page view into the subject's interests (see the module docstring)."""
    now = now or timezone.now()
    with transaction.atomic():
        if subject.browser_hash:
            # Serialised with the browser's attachment to an account: attached meanwhile, the
            # view is the account's; attached after, the listener moves what this writes.
            account_id = browser_subject_lock(browser_hash=subject.browser_hash)
            if account_id is not None:
                subject = DataSubject(user_id=account_id)
        # The gate first: without the purpose, nothing is stored, not even a rejected count.
        if not consent_is_granted_for_subject(subject=subject, purpose_code=taxonomy.BROWSING_PURPOSE):
            raise PurposeNotGranted([taxonomy.BROWSING_PURPOSE])
        host, codes, at = page_view_clean(site=site, themes=themes, viewed_at=viewed_at, now=now)
        refused = set(
            InterestCorrection.objects.filter(_subject_filter(subject), theme__in=codes).values_list(
                "theme", flat=True
            )
        )
        counted = [code for code in codes if code not in refused]
        life = half_life()
        existing = {
            row.theme: row
            for row in Interest.objects.select_for_update().filter(
                _subject_filter(subject), theme__in=counted
            )
        }
        for code in counted:
            interest = existing.get(code)
            if interest is None:
                try:
                    with transaction.atomic():  # a savepoint: the row may appear meanwhile
                        Interest.objects.create(
                            **_subject_fields(subject),
                            theme=code,
                            score=1.0,
                            score_at=at,
                            views=1,
                            first_seen_at=at,
                            last_seen_at=at,
                            sources={host: {"views": 1, "first": at.isoformat(), "last": at.isoformat()}},
                        )
                    continue
                except IntegrityError:
                    # A concurrent view of the same theme created it first (two tabs, a page
                    # that reports twice): fold this view into that row instead of failing.
                    interest = Interest.objects.select_for_update().get(_subject_filter(subject), theme=code)
            _fold_view(interest, host, at, life)
            interest.save(
                update_fields=["score", "score_at", "views", "first_seen_at", "last_seen_at", "sources"]
            )
    return counted


def _theme_check(theme: Any) -> str:
    if not taxonomy.is_theme(theme):
        raise ProfileInputError({"theme": "unknown theme code"})
    return str(theme)


def _require_browsing(subject: DataSubject) -> None:
    if not consent_is_granted_for_subject(subject=subject, purpose_code=taxonomy.BROWSING_PURPOSE):
        raise PurposeNotGranted([taxonomy.BROWSING_PURPOSE])


def _audit_subject(subject: DataSubject, event: str, data: dict[str, Any]) -> None:
    if subject.user_id is not None:
        user = User.objects.filter(pk=subject.user_id).first()
        audit_log(event=event, acting_user=user, subject_user=user, data=data)


def interest_correct(*, subject: DataSubject, theme: Any) -> InterestCorrection:
    """ "Not interested": the theme leaves the inferred interests and stays out of them."""
    code = _theme_check(theme)
    with transaction.atomic():
        _require_browsing(subject)
        Interest.objects.filter(_subject_filter(subject), theme=code).delete()
        correction, _created = InterestCorrection.objects.get_or_create(
            **_subject_fields(subject), theme=code, defaults={"verdict": InterestCorrection.NOT_INTERESTED}
        )
        _audit_subject(subject, "profile.interest_corrected", {"theme": code})
    return correction


def interest_correction_remove(*, subject: DataSubject, theme: Any) -> bool:
    code = _theme_check(theme)
    with transaction.atomic():
        removed, _rows = InterestCorrection.objects.filter(_subject_filter(subject), theme=code).delete()
        if removed:
            _audit_subject(subject, "profile.interest_correction_removed", {"theme": code})
    return bool(removed)


def interest_delete(*, subject: DataSubject, theme: Any) -> bool:
    """Forget one inferred interest (new page views may infer it again; "not interested" stops that)."""
    code = _theme_check(theme)
    with transaction.atomic():
        removed, _rows = Interest.objects.filter(_subject_filter(subject), theme=code).delete()
        if removed:
            _audit_subject(subject, "profile.interest_deleted", {"theme": code})
    return bool(removed)


def interests_delete_all(*, subject: DataSubject) -> int:
    """Forget every inferred interest; the resident's corrections stay (they are their word)."""
    with transaction.atomic():
        removed, _rows = Interest.objects.filter(_subject_filter(subject)).delete()
        _audit_subject(subject, "profile.interests_deleted", {"count": removed})
    return removed


def interests_erase(subject: DataSubject) -> dict[str, Any]:
    """consent.purpose_data holder of `personalisation-browsing`: interests and corrections go.

    Two plain DELETEs (what the ORM's delete() runs for these models, which nothing refers to and
    no signal watches), without building a collector and compiling a query on the append path."""
    where, params = _interests_where(subject)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Interest._meta.db_table} WHERE {where}", params)  # noqa: S608
        interests = cursor.rowcount
        cursor.execute(f"DELETE FROM {InterestCorrection._meta.db_table} WHERE {where}", params)  # noqa: S608
        corrections = cursor.rowcount
    summary: dict[str, Any] = {}
    if interests:
        summary["interests"] = interests
    if corrections:
        summary["corrections"] = corrections
    return summary


def interests_held(subject: DataSubject) -> tuple[str, list[Any]]:
    """consent.purpose_data `held` of `interests_erase`: whether any interest or correction row
    is the subject's (the rows its two DELETEs would remove)."""
    where, params = _interests_where(subject)
    return (
        f"EXISTS (SELECT 1 FROM {Interest._meta.db_table} WHERE {where}) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM {InterestCorrection._meta.db_table} WHERE {where})",
        params * 2,
    )


def _interests_where(subject: DataSubject) -> tuple[str, list[Any]]:
    if subject.user_id is not None:
        return "user_id = %s", [_user_id_value(subject.user_id)]
    return "user_id IS NULL AND browser_hash = %s", [subject.browser_hash]


def browser_interests_link(browser_hash: str, user: Any) -> None:
    """consent.purpose_data browser-link listener (inside subject_link_browser's transaction).

    The account now holds the browser's choices (copied when more recent). If the account
    grants browsing personalisation, the browser's interests and corrections join its own
    (merged theme by theme); otherwise they are erased: the account's decision governs them.
    """
    browser = DataSubject(browser_hash=browser_hash)
    account = subject_of(user)
    if not consent_is_granted_for_subject(subject=account, purpose_code=taxonomy.BROWSING_PURPOSE):
        interests_erase(browser)
        return
    life = half_life()
    mine = {row.theme: row for row in Interest.objects.select_for_update().filter(user_id=user.pk)}
    refused = set(InterestCorrection.objects.filter(user_id=user.pk).values_list("theme", flat=True))
    for correction in InterestCorrection.objects.filter(_subject_filter(browser)):
        if correction.theme not in refused:
            InterestCorrection.objects.create(
                user_id=user.pk, theme=correction.theme, verdict=correction.verdict
            )
            refused.add(correction.theme)
        mine.pop(correction.theme, None)
        Interest.objects.filter(user_id=user.pk, theme=correction.theme).delete()
    for theirs in Interest.objects.select_for_update().filter(_subject_filter(browser)):
        if theirs.theme in refused:
            continue
        target = mine.get(theirs.theme)
        if target is None:
            Interest.objects.create(
                user_id=user.pk,
                theme=theirs.theme,
                score=theirs.score,
                score_at=theirs.score_at,
                views=theirs.views,
                first_seen_at=theirs.first_seen_at,
                last_seen_at=theirs.last_seen_at,
                sources=theirs.sources,
            )
            continue
        target.score, target.score_at = decay.merge(
            (target.score, target.score_at), (theirs.score, theirs.score_at), life
        )
        target.views += theirs.views
        target.first_seen_at = min(target.first_seen_at, theirs.first_seen_at)
        target.last_seen_at = max(target.last_seen_at, theirs.last_seen_at)
        for site, source in theirs.sources.items():
            own = target.sources.get(site)
            if own is None:
                target.sources[site] = dict(source)
            else:
                own["views"] += source["views"]
                own["first"] = min(own["first"], source["first"])
                own["last"] = max(own["last"], source["last"])
        target.save()
    interests_erase(browser)


# --- Maintenance -------------------------------------------------------------------------------


def _retention(purpose_code: str) -> timedelta | None:
    days = purpose_by_code(purpose_code).retention_days
    return timedelta(days=days) if days else None


def _sweep_declared() -> int:
    erased = 0
    for purpose_code in sorted(set(taxonomy.FIELD_PURPOSES.values())):
        fields = taxonomy.fields_of(purpose_code)
        holding = Q()
        for name in fields:
            holding |= (
                ~Q(**{name: []})
                if name in ("themes", "accessibility", "notification_themes")
                else ~Q(**{name: ""})
            )
        stale = (
            DeclaredProfile.objects.filter(holding)
            .alias(granted=granted_exists(purpose_code, user_ref="user_id"))
            .filter(granted=False)
            .values_list("user_id", flat=True)
        )
        for user_id in list(stale):
            if declared_erase(DataSubject(user_id=user_id), purpose_code):
                erased += 1
    return erased


def _sweep_interests(now: datetime) -> dict[str, int]:
    purpose = taxonomy.BROWSING_PURPOSE
    counts: dict[str, int] = {}
    for model in (Interest, InterestCorrection):
        by_user = model.objects.filter(user__isnull=False).alias(
            granted=granted_exists(purpose, user_ref="user_id")
        )
        by_browser = model.objects.filter(user__isnull=True).alias(
            granted=granted_exists(purpose, browser_hash_ref="browser_hash")
        )
        removed = by_user.filter(granted=False).delete()[0] + by_browser.filter(granted=False).delete()[0]
        counts[f"{model._meta.model_name}_not_granted"] = removed
    retention = _retention(purpose)
    life = half_life()
    faded = 0
    trimmed = 0
    for interest in Interest.objects.select_for_update().iterator():
        too_old = retention is not None and interest.last_seen_at < now - retention
        if too_old or decay.weight_at(interest.score, interest.score_at, now, life) < decay.FADED:
            interest.delete()
            faded += 1
            continue
        if retention is not None:
            limit = (now - retention).isoformat()
            kept = {site: source for site, source in interest.sources.items() if source["last"] >= limit}
            if kept != interest.sources:
                interest.sources = kept
                interest.save(update_fields=["sources"])
                trimmed += 1
    counts["interests_faded_or_expired"] = faded
    counts["interests_sources_trimmed"] = trimmed
    return counts


def profiles_maintain(*, now: datetime | None = None) -> dict[str, int]:
    """Erase what must not be kept any more (cron: `manage.py profiles_maintain`)."""
    now = now or timezone.now()
    with transaction.atomic():
        counts = {"declared_not_granted": _sweep_declared()}
        counts.update(_sweep_interests(now))
    log.info("profiles_maintain %s", " ".join(f"{key}={value}" for key, value in sorted(counts.items())))
    return counts
