"""Identity normalization and resolution.

An email address, an E.164 phone number and an X user id are *identities*; one or more of them
make a Contact. Normalization is deterministic so that the same person seen by different
connectors resolves to one row:

- email: the address is casefolded and its domain IDNA-encoded (``Ana@Bücher.DE`` →
  ``ana@xn--bcher-kva.de``);
- phone: E.164 via ``phonenumbers`` in the workspace's region (``(415) 555-0100``,
  ``+1 415-555-0100`` and ``14155550100`` are all ``+14155550100`` in US). A number that is
  possible but not valid (555 numbers) still becomes E.164. Short codes (``72345``) and
  alphanumeric sender ids (``AMAZON``) stay identities of their own, as given;
- x: the numeric user id (the @handle is display only, so renames keep one contact);
- any other kind (third-party connectors): trimmed value, kind must be a short identifier.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from django.db import connection, transaction

from .models import Contact, Identity, Workspace
from .rawdb import TextArray, raw_cursor, update_from_unnest
from .timelines import contact_timelines_rebuild

KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Generous on purpose: real mail has odd local parts; we refuse only what cannot be an address.
EMAIL_LOCAL_RE = re.compile(r"^[^\s@<>()\[\],;:\"]+$")
ALNUM_SENDER_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ._&'-]{1,11}$")
SHORT_CODE_RE = re.compile(r"^\d{3,8}$")
X_ID_RE = re.compile(r"^\d{1,20}$")

# Where a name comes from, weakest first. A contact's name (and an identity's display) is
# replaced only by one from a source at least as strong; a name set by hand by nothing at all.
# "x" is an X profile name; the @handle an X item carries is an address like the others.
NAME_SOURCES = ("address", "phone", "email", "x", "address_book", "hand")
_NAME_RANK = {source: rank for rank, source in enumerate(NAME_SOURCES)}


def name_rank(source: str) -> int | None:
    """The strength of a name source; None for a name recorded before sources were (blank)."""
    return _NAME_RANK.get(source)


def display_source(channel: str, extra: dict | None, display: str) -> str:
    """Where the display name a participant carries comes from: an SMS backup's contact names
    are the phone's address book; device call logs and SMS give the phone's nickname."""
    if display.startswith("@"):
        return "address"
    if (extra or {}).get("origin") == "sms_backup":
        return "address_book"
    return {"email": "email", "twitter": "x"}.get(channel, "phone")


def name_wins(new_source: str, old_source: str, *, same_name_updated: bool) -> bool:
    """Whether a name from ``new_source`` replaces one from ``old_source``: never a name set by
    hand; a stronger source always; the same one when it is the identity the name came from
    that changed its display (an X account renamed). Names from before sources were recorded
    follow that last rule only, since one of them may have been typed by a person."""
    new, old = name_rank(new_source), name_rank(old_source)
    if old_source == "hand":
        return False
    if new is None or old is None:
        return same_name_updated
    return new > old or (same_name_updated and new >= old)


def merge_name(*, survivor: Contact, other: Contact) -> tuple[str, str]:
    """(name, source) of the contact a merge leaves: the survivor's, unless it has none or the
    other's comes from a strictly stronger source."""
    if not survivor.name or (other.name and name_wins(other.name_source, survivor.name_source,
                                                      same_name_updated=False)):
        return other.name, other.name_source
    return survivor.name, survivor.name_source


def merge_name_apply(*, survivor: Contact, other: Contact) -> None:
    """Give ``survivor`` the name a merge of ``other`` into it leaves (``merge_name``). When that
    is ``other``'s, ``other.merge_undo`` keeps the survivor's name before, so that undoing
    exactly this merge gives it back (``merge_name_undo``). Saves both rows."""
    name, source = merge_name(survivor=survivor, other=other)
    took = name != survivor.name
    other.merge_undo = {"name": survivor.name, "name_source": survivor.name_source, "took": name} if took else {}
    other.save(update_fields=["merge_undo"])
    if took:
        survivor.name, survivor.name_source = name, source
        survivor.save(update_fields=["name", "name_source"])


def merge_order(contact: Contact) -> tuple:
    """Sort key of merged-in contacts by when they were merged."""
    return (contact.merged_at is not None, contact.merged_at or contact.created_at, contact.pk)


def merge_name_undo(child: Contact) -> None:
    """Before ``child`` is split off the contact it was merged into: give that contact the name
    it had before this merge, when the merge took ``child``'s name and nothing renamed it since.
    A later merge into the same contact that recorded the taken name as its "before" records
    the older one instead (undoing merges out of order stays exact). Clears the record."""
    undo = child.merge_undo or {}
    if not undo or child.merged_into_id is None:
        return
    parent = Contact.objects.select_for_update().get(pk=child.merged_into_id)
    before = {"name": undo.get("name", ""), "name_source": undo.get("name_source", "")}
    if parent.name == undo.get("took"):
        parent.name, parent.name_source = before["name"], before["name_source"]
        parent.save(update_fields=["name", "name_source"])
    for sibling in Contact.objects.filter(merged_into=parent).exclude(pk=child.pk):
        if (sibling.merge_undo or {}).get("name") == undo.get("took") and merge_order(sibling) > merge_order(child):
            sibling.merge_undo = {**sibling.merge_undo, **before}
            sibling.save(update_fields=["merge_undo"])
    child.merge_undo = {}
    child.save(update_fields=["merge_undo"])


class InvalidIdentity(ValueError):
    """A value that cannot be an identity of that kind. The message says why."""


def _text(value) -> str:
    """The value as text: connectors hand over strings, sometimes numbers (JSON phone numbers)."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidIdentity(f"identity value must be text, got {type(value).__name__}")
    return value


def normalize_email(value: str) -> str:
    value = _text(value).strip().strip("<>").strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    if value.count("@") != 1:
        raise InvalidIdentity(f"not an email address: {value!r}")
    local, domain = value.split("@")
    domain = domain.rstrip(".")
    if not local or not domain or not EMAIL_LOCAL_RE.match(local) or len(local) > 64:
        raise InvalidIdentity(f"not an email address: {value!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidIdentity(f"bad domain in email address {value!r}: {exc}") from None
    if "." not in ascii_domain.strip(".") and ascii_domain != "localhost":
        raise InvalidIdentity(f"email domain has no dot: {value!r}")
    if not re.fullmatch(r"[a-z0-9.-]+", ascii_domain) or ".." in ascii_domain:
        raise InvalidIdentity(f"bad domain in email address {value!r}")
    result = f"{local.casefold()}@{ascii_domain}"
    if len(result) > 320:
        raise InvalidIdentity("email address longer than 320 characters")
    return result


def normalize_phone(value: str, region: str = "US") -> str:
    raw = _text(value).strip()
    if not raw:
        raise InvalidIdentity("empty phone number")
    if raw.lower().startswith("tel:"):
        raw = raw[4:]
    compact = re.sub(r"[\s().\-/]", "", raw)
    # Alphanumeric sender ids and short codes are identities of their own, kept as given.
    if ALNUM_SENDER_RE.match(raw) and not re.fullmatch(r"\+?[\d\s().\-/]+", raw):
        return raw
    if SHORT_CODE_RE.match(compact) and len(compact) <= 6:
        return compact
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {raw!r} ({exc._msg})") from None
    # Only a full number is E.164; a local-only one (7 digits in US, no area code) is not, and
    # making it "+1" + 7 digits would merge different people from different area codes.
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        if SHORT_CODE_RE.match(compact):
            return compact
        raise InvalidIdentity(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_x(value: str) -> str:
    value = str(value or "").strip()
    if not X_ID_RE.match(value):
        raise InvalidIdentity(f"X identities are numeric user ids, got {value!r}")
    return value.lstrip("0") or "0"


def normalize(kind: str, value: str, *, region: str = "US") -> tuple[str, str]:
    """Return (kind, normalized value) or raise InvalidIdentity."""
    kind = (kind or "").strip().lower()
    if kind in ("tel", "sms"):
        kind = "phone"
    if kind in ("twitter",):
        kind = "x"
    if kind == "email":
        return kind, normalize_email(value)
    if kind == "phone":
        return kind, normalize_phone(value, region)
    if kind == "x":
        return kind, normalize_x(value)
    if not KIND_RE.match(kind):
        raise InvalidIdentity(f"bad identity kind {kind!r}")
    value = str(value or "").strip()
    if not value or len(value) > 320:
        raise InvalidIdentity(f"bad {kind} identity value {value!r}")
    return kind, value


@dataclass(slots=True)
class Wanted:
    display: str = ""
    needs_contact: bool = False
    # When ``display`` was seen (its item's time): a display newer than everything stored for a
    # known identity replaces the old one (an X account renamed); an older one changes nothing.
    seen_at: dt.datetime | None = None
    source: str = ""  # where ``display`` comes from (NAME_SOURCES)
    avatar: str = ""  # from the item ``display`` came from


def identities_resolve(
    *, workspace: Workspace, wanted: dict[tuple[str, str], Wanted],
    contact_renames: dict[int, tuple[str, str]] | None = None,
) -> dict[tuple[str, str], Identity]:
    """Find or create an Identity for each normalized (kind, value).

    Identities that need a contact and have none get a new Contact named after the display
    value. Safe against concurrent ingests: the unique constraint decides, losers re-read.
    Must run inside a transaction.

    Contacts named after a display that changed are renamed here, or, when ``contact_renames``
    is given, collected into it ({contact id: (old name, new name)}) for the caller to apply
    with ``contacts_rename`` once it holds the batch's contact locks (ingest does that after
    its summary update, which locks them in id order: taking one contact's lock here, early,
    deadlocked two concurrent ingests).
    """
    if not wanted:
        return {}
    found = _select(workspace, wanted.keys())
    renames = _displays_refresh(found, wanted)
    _avatars_refresh(found, wanted)
    if contact_renames is None:
        contacts_rename(renames)
    else:
        contact_renames.update(renames)
    missing = sorted(key for key in wanted if key not in found)  # one insert order: no deadlocks
    if missing:
        new_contacts: dict[tuple[str, str], Contact] = {}
        to_contact = [key for key in missing if wanted[key].needs_contact]
        if to_contact:
            created = Contact.objects.bulk_create([
                Contact(workspace=workspace, name=_contact_name(key, wanted[key].display),
                        name_source=wanted[key].source if wanted[key].display else "address")
                for key in to_contact
            ])
            new_contacts = dict(zip(to_contact, created, strict=True))
        Identity.objects.bulk_create(
            [
                Identity(
                    workspace=workspace,
                    kind=key[0],
                    value=key[1],
                    display=wanted[key].display[:320],
                    display_seen_at=wanted[key].seen_at if wanted[key].display else None,
                    display_source=wanted[key].source if wanted[key].display else "",
                    avatar_url=wanted[key].avatar[:500],
                    contact=new_contacts.get(key),
                    home_contact=new_contacts.get(key),
                )
                for key in missing
            ],
            ignore_conflicts=True,
        )
        found.update(_select(workspace, missing))
        # Someone else created some of these first: drop the contacts we made for nothing.
        orphans = [c.pk for key, c in new_contacts.items() if found[key].contact_id != c.pk]
        if orphans:
            Contact.objects.filter(pk__in=orphans).delete()
    # Identities seen before only in automated mail have no contact yet: give them one now.
    adopt = [
        ident for key, ident in found.items()
        if wanted[key].needs_contact and ident.contact_id is None and not ident.is_self
    ]
    if adopt:
        created = Contact.objects.bulk_create([
            Contact(workspace=workspace, name=_contact_name((i.kind, i.value), i.display),
                    name_source=i.display_source if i.display else "address")
            for i in adopt
        ])
        for ident, contact in zip(adopt, created, strict=True):
            ident.contact = contact
            ident.home_contact = contact
        Identity.objects.bulk_update(adopt, ["contact", "home_contact"])
    return found


_IDENTITY_COLUMNS = [f.attname for f in Identity._meta.concrete_fields]


def _select(workspace: Workspace, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Identity]:
    if connection.vendor == "postgresql":
        return _select_pg(workspace, list(keys))
    by_kind: dict[str, list[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, []).append(value)
    result: dict[tuple[str, str], Identity] = {}
    for kind, values in by_kind.items():
        for i in range(0, len(values), 1000):
            for ident in Identity.objects.filter(workspace=workspace, kind=kind, value__in=values[i : i + 1000]):
                result[(ident.kind, ident.value)] = ident
    return result


def _select_pg(workspace: Workspace, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Identity]:
    """One probe of identity_unique per key (LATERAL … LIMIT 1 keeps the plan from turning into
    a scan of the workspace's identities when statistics are stale during a big import)."""
    if not keys:
        return {}
    cols = ", ".join(_IDENTITY_COLUMNS)
    table = Identity._meta.db_table
    with raw_cursor() as cur:
        cur.execute(
            f"SELECT i.* FROM unnest(%s::text[], %s::text[]) AS k(kind, value) CROSS JOIN LATERAL "
            # The workspace as an InitPlan parameter: estimated like any workspace even when
            # the statistics have never seen this one (see ingest._existing_keys).
            f"(SELECT {cols} FROM {table} WHERE workspace_id = (SELECT %s::bigint) AND kind = k.kind "
            f"AND value = k.value LIMIT 1) i",
            [TextArray([k for k, _ in keys]), TextArray([v for _, v in keys]), workspace.pk],
        )
        rows = cur.fetchall()
    result = {}
    for row in rows:
        ident = Identity.from_db(connection.alias, _IDENTITY_COLUMNS, row)
        result[(ident.kind, ident.value)] = ident
    return result


def _displays_refresh(
    found: dict[tuple[str, str], Identity], wanted: dict[tuple[str, str], Wanted]
) -> dict[int, tuple[str, str, str]]:
    """Give known identities the display of items newer than the one their display came from
    (the contact's name follows when it was only the old display, never a name a user chose).

    ``display_seen_at`` decides without a query: a different display from a newer item
    renames; one from an older item (an archive imported after the API sync) changes nothing.
    The same display seen again writes nothing (unless it had no time yet): a busy identity
    costs no write per batch. So after A (t1) → B (t5), B again at t10 and then A at t7 from an
    older export, the display goes back to A; telling that apart would need the newest item's
    time on every batch — what this replaced: an aggregate over all of an identity's items,
    which grew with the database.

    Time decides only between displays of one strength (``display_source``): a display from a
    stronger source replaces a weaker one whenever it was seen, a weaker one never replaces a
    stronger one (NAME_SOURCES)."""
    touched: list[Identity] = []
    contact_renames: dict[int, tuple[str, str, str]] = {}  # contact id → (old name, new name, source)
    for key, ident in found.items():
        w = wanted[key]
        if not w.display or w.seen_at is None:
            continue
        display = w.display[:320]
        seen = ident.display_seen_at
        new_rank, old_rank = name_rank(w.source), name_rank(ident.display_source)
        stronger = new_rank is not None and (old_rank is None and not ident.display or
                                             old_rank is not None and new_rank > old_rank)
        if new_rank is not None and old_rank is not None and new_rank < old_rank:
            continue
        if display == ident.display:
            if seen is None or (stronger and ident.display_source != w.source):
                ident.display_seen_at = w.seen_at if seen is None else max(seen, w.seen_at)
                ident.display_source = w.source
                touched.append(ident)
            continue
        if not stronger and seen is not None and w.seen_at <= seen:
            continue
        old_name = _contact_name(key, ident.display)
        ident.display, ident.display_seen_at, ident.display_source = display, w.seen_at, w.source
        touched.append(ident)
        if ident.contact_id:
            contact_renames[ident.contact_id] = (old_name, _contact_name(key, display), w.source)
    if not touched:
        return contact_renames
    # One statement for all of them (an archive import renames thousands of accounts), in id
    # order like the summary updates, so concurrent ingests lock rows in one order.
    touched.sort(key=lambda i: i.pk)
    if connection.vendor == "postgresql":
        update_from_unnest(
            Identity._meta.db_table, [i.pk for i in touched],
            "display = d.display, display_seen_at = d.seen, display_source = d.source",
            [("display", "text", TextArray([i.display for i in touched])),
             ("seen", "timestamptz", TextArray([i.display_seen_at.isoformat() for i in touched])),
             ("source", "text", TextArray([i.display_source for i in touched]))],
        )
    else:
        Identity.objects.bulk_update(touched, ["display", "display_seen_at", "display_source"], batch_size=1000)
    return contact_renames


def _avatars_refresh(found: dict[tuple[str, str], Identity], wanted: dict[tuple[str, str], Wanted]) -> None:
    """Give known identities the profile picture of an item at least as new as their display's
    (a picture changes rarely, so this writes rarely); an older import only fills in a missing one."""
    changed = []
    for key, ident in found.items():
        w = wanted[key]
        avatar = w.avatar[:500]
        if not avatar or avatar == ident.avatar_url or w.seen_at is None:
            continue
        if ident.avatar_url and ident.display_seen_at is not None and w.seen_at < ident.display_seen_at:
            continue
        ident.avatar_url = avatar
        changed.append(ident)
    if changed:
        Identity.objects.bulk_update(sorted(changed, key=lambda i: i.pk), ["avatar_url"])


def contacts_rename(renames: dict[int, tuple[str, str, str]]) -> None:
    """Apply {contact id: (old name, new name, source)} where the name precedence allows it
    (``name_wins``): a contact still named after the identity's old display follows it unless
    the new one is weaker than the name's source; another name only yields to a stronger
    source; a name set by hand never changes."""
    if not renames:
        return
    renamed_contacts = []
    for c in Contact.objects.filter(pk__in=list(renames)).only("pk", "name", "name_source"):
        old, new, source = renames[c.pk]
        if c.name != new and name_wins(source, c.name_source, same_name_updated=c.name == old):
            c.name, c.name_source = new, source
            renamed_contacts.append(c)
    renamed_contacts.sort(key=lambda c: c.pk)
    if renamed_contacts and connection.vendor == "postgresql":
        update_from_unnest(Contact._meta.db_table, [c.pk for c in renamed_contacts],
                           "name = d.name, name_source = d.source",
                           [("name", "text", TextArray([c.name for c in renamed_contacts])),
                            ("source", "text", TextArray([c.name_source for c in renamed_contacts]))])
        return
    Contact.objects.bulk_update(renamed_contacts, ["name", "name_source"], batch_size=1000)


def _contact_name(key: tuple[str, str], display: str) -> str:
    return (display or key[1])[:300]


def self_contact(workspace: Workspace) -> Contact:
    contact = Contact.objects.filter(workspace=workspace, is_self=True, merged_into=None).first()
    if contact is None:
        contact = Contact.objects.create(workspace=workspace, is_self=True, name="Me")
    return contact


@transaction.atomic
def identity_mark_self(*, workspace: Workspace, kind: str, value: str, display: str = "") -> Identity:
    """Mark one of the owner's own addresses. Activities from it are outbound and it gets no
    contact timeline of its own."""
    kind, value = normalize(kind, value, region=workspace.region)
    me = self_contact(workspace)
    ident, created = Identity.objects.get_or_create(
        workspace=workspace, kind=kind, value=value,
        defaults={"display": display, "is_self": True, "contact": me, "home_contact": me},
    )
    if not created and not ident.is_self:
        old = ident.contact_id
        ident.is_self = True
        ident.contact = me
        ident.home_contact = me
        ident.save(update_fields=["is_self", "contact", "home_contact"])
        if old:
            contact_timelines_rebuild(contact_ids=[old])
    return ident
