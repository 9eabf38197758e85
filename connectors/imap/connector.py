"""IMAP mailboxes, read-only: ``mesh_source add imap --name Work --config host=… --config
username=… --secret password=…``.

- Folders: INBOX and the Sent folder found by SPECIAL-USE (``\\Sent``; ``\\All`` instead of
  Sent on Gmail-like servers), or the ``folders`` config (a comma list; ``\\Sent``/``\\All`` may
  be named by their flag).
- Every folder is EXAMINEd (read-only) and messages are fetched with ``BODY.PEEK[]``, so the
  server's ``\\Seen`` flags never change.
- Cursor per folder: ``{"uidvalidity", "last_uid", "seen": [[first, last], ...]}``. New mail is
  ``UID last_uid+1:*``; a changed UIDVALIDITY rescans the folder (the Message-ID dedup key makes
  the rescan add nothing twice). ``seen`` is the set of UIDs already handed over (as ranges):
  reconciliation compares it with the server's UID set and re-fetches the holes (a message the
  server did not return, a batch that failed); a hole that cannot be filled is reported as the
  source's gap until a later sync fills it.
- Batches are bounded in count and bytes, so a 200,000-message mailbox syncs in bounded memory.
- Disconnects are retried with backoff; bad credentials raise a permanent ConnectorError with
  the server's words (status ``auth_failed``).
"""

from __future__ import annotations

import datetime as dt
import imaplib
import ipaddress
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from connectors.base import Batch, ConfigError, Connector, ConnectorError, RawItem
from connectors.email_common import EmailNormalizer, pack

log = logging.getLogger(__name__)

SECURITY = ("ssl", "starttls", "none")
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
METADATA_CHUNK = 2000
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
TRANSIENT = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.abort, EOFError)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ImapConfig:
    host: str = ""
    port: int = 0
    security: str = "ssl"
    username: str = ""
    folders: tuple[str, ...] = field(default_factory=tuple)
    aliases: tuple[str, ...] = field(default_factory=tuple)
    batch_size: int = 200
    max_batch_bytes: int = 32 * 1024 * 1024
    timeout: int = 60
    retries: int = 3
    reconcile: bool = True
    prefetch: bool = True
    ca_file: str = ""  # PEM file of a private CA to trust (self-hosted servers); default: the system's

    def __post_init__(self):
        if not self.host:
            raise ValueError("host is required")
        if not self.username:
            raise ValueError("username is required")
        security = str(self.security).lower()
        if security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}")
        if security == "none" and not _is_loopback(self.host):
            raise ValueError("security=none sends the password in clear: allowed only for a loopback host")
        object.__setattr__(self, "security", security)
        object.__setattr__(self, "port", self.port or DEFAULT_PORTS[security])
        if self.batch_size < 1 or self.max_batch_bytes < 1:
            raise ValueError("batch_size and max_batch_bytes must be positive")


# --- UID range sets (the cursor's "seen") ------------------------------------------------------


def ranges_add(ranges: list[list[int]], uids) -> list[list[int]]:
    points = sorted(set(uids))
    merged = sorted([list(r) for r in ranges] + [[u, u] for u in points])
    out: list[list[int]] = []
    for start, end in merged:
        if out and start <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def ranges_contains(ranges: list[list[int]], uid: int) -> bool:
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] < uid:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= uid <= ranges[lo][1]


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class ImapConnector(EmailNormalizer, Connector):
    key = "imap"
    label = "IMAP mailbox"
    channel = "email"
    Config = ImapConfig
    pollable = True
    required_secrets = ()  # password, or access_token for XOAUTH2 (checked below)

    def __init__(self, config=None, secrets=None, *, context=None):
        super().__init__(config, secrets, context=context)
        if not (self.secrets.get("password") or self.secrets.get("access_token")):
            raise ConfigError("missing secret(s): password (or access_token for XOAUTH2)")

    def self_identities(self) -> list[tuple[str, str, str]]:
        found = [self.config.username] if "@" in self.config.username else []
        found += [a for a in self.config.aliases if "@" in a]
        return [("email", a, "") for a in found]

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> IMAPClient:
        """A logged-in client; transient failures are retried with backoff."""
        cfg = self.config
        attempt = 0
        while True:
            try:
                return self._connect_once()
            except LoginError as exc:
                raise ConnectorError(f"authentication failed: {_server_words(exc)}", permanent=True,
                                     status="auth_failed") from None
            except ssl.SSLCertVerificationError as exc:
                raise ConnectorError(f"the server's certificate is not trusted: {exc.verify_message or exc} "
                                     "(set ca_file for a private CA)", permanent=True) from None
            except (*TRANSIENT, IMAPClientError) as exc:
                attempt += 1
                if attempt > cfg.retries:
                    raise ConnectorError(f"cannot reach {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from None
                log.warning("imap %s: %s; retrying (%d/%d)", cfg.host, exc, attempt, cfg.retries)
                time.sleep(min(30, 2 ** (attempt - 1)))

    def _connect_once(self) -> IMAPClient:
        cfg = self.config
        context = ssl.create_default_context(cafile=cfg.ca_file or None) if cfg.security != "none" else None
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.security == "ssl", ssl_context=context,
                            timeout=cfg.timeout)
        try:
            if cfg.security == "starttls":
                client.starttls(context)  # raises if the server cannot: never falls back to plaintext
            if self.secrets.get("password"):
                client.login(cfg.username, self.secrets["password"])
            else:
                client.oauth2_login(cfg.username, self.secrets["access_token"])
        except Exception:
            try:
                client.shutdown()
            except Exception:
                pass
            raise
        return client

    @staticmethod
    def close(client: IMAPClient) -> None:
        try:
            client.logout()
        except Exception:
            try:
                client.shutdown()
            except Exception:
                pass

    def folders(self, client: IMAPClient) -> list[str]:
        listed = client.list_folders()
        by_flag: dict[str, str] = {}
        names = set()
        for flags, _delim, name in listed:
            name = _text(name)
            names.add(name)
            for flag in flags:
                by_flag.setdefault(_text(flag).lower(), name)
        wanted = self.config.folders or (("INBOX", "\\All") if "\\all" in by_flag else ("INBOX", "\\Sent"))
        out: list[str] = []
        for item in wanted:
            name = by_flag.get(item.lower()) if item.startswith("\\") else item
            if name and name not in out:
                out.append(name)
        return out

    # -- fetch ------------------------------------------------------------------------------

    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        """Batches after ``cursor``. The next batch is fetched from the server (in a helper
        thread, queue of one) while Mesh stores the current one: the server, the network and
        the parser work at the same time, and at most three batches are in memory."""
        if self.config.prefetch:
            yield from _prefetched(self._fetch(cursor, since=since))
        else:
            yield from self._fetch(cursor, since=since)

    def _fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        state = {"folders": {k: dict(v) for k, v in ((cursor or {}).get("folders") or {}).items()}}
        client = self.connect()
        try:
            folders = self.folders(client)
            gaps: dict[str, str] = {}
            for folder in folders:
                attempt = 0
                while True:
                    try:
                        yield from self._folder(client, folder, state, gaps, since)
                        break
                    except TRANSIENT as exc:
                        attempt += 1
                        if attempt > self.config.retries:
                            raise ConnectorError(f"connection to {self.config.host} lost: {exc}") from None
                        log.warning("imap %s: %s; reconnecting (%d/%d)", self.config.host, exc, attempt,
                                    self.config.retries)
                        self.close(client)
                        time.sleep(min(30, 2 ** (attempt - 1)))
                        client = self.connect()
            # A last (possibly empty) batch carries the final cursor and the gap verdict.
            yield Batch([], _copy(state), gap=_gap_text(gaps))
        finally:
            self.close(client)

    def _folder(self, client, folder, state, gaps, since) -> Iterator[Batch]:
        info = client.select_folder(folder, readonly=True)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        fs = state["folders"].get(folder)
        if not fs or int(fs.get("uidvalidity", -1)) != uidvalidity:
            if fs:
                log.warning("imap %s/%s: UIDVALIDITY changed %s → %s: rescanning", self.config.host, folder,
                            fs.get("uidvalidity"), uidvalidity)
            fs = {"uidvalidity": uidvalidity, "last_uid": 0, "seen": [], "floor": 1}
            state["folders"][folder] = fs
        if since is not None:
            # A backfill: everything since the date. Reconciliation later looks at UIDs from the
            # first one found (or from UIDNEXT when none), not at older mail never asked for.
            wanted = sorted(int(u) for u in client.search(["SINCE", since.date()]))
            start = wanted[0] if wanted else int(info.get(b"UIDNEXT", fs["last_uid"] + 1))
            fs["floor"] = start if not fs["last_uid"] else min(int(fs.get("floor", 1)), start)
        else:
            wanted = sorted(int(u) for u in client.search(["UID", f"{fs['last_uid'] + 1}:*"]) if int(u) > fs["last_uid"])
            if self.config.reconcile and fs["last_uid"]:
                wanted = self._holes(client, fs) + wanted
        missing: list[int] = []
        yield from self._fetch_uids(client, folder, uidvalidity, fs, wanted, missing, state, gaps)
        if missing:
            gaps[folder] = f"{folder}: {len(missing)} message(s) the server did not return (UID {', '.join(map(str, missing[:10]))})"
        else:
            gaps.pop(folder, None)

    def _holes(self, client, fs) -> list[int]:
        """UIDs the server has up to last_uid that were never handed over."""
        floor = int(fs.get("floor", 1))
        if floor > fs["last_uid"]:
            return []
        server = client.search(["UID", f"{floor}:{fs['last_uid']}"])
        return sorted(int(u) for u in server if floor <= int(u) <= fs["last_uid"] and not ranges_contains(fs["seen"], int(u)))

    def _fetch_uids(self, client, folder, uidvalidity, fs, uids, missing, state, gaps) -> Iterator[Batch]:
        cfg = self.config
        for i in range(0, len(uids), METADATA_CHUNK):
            chunk = uids[i : i + METADATA_CHUNK]
            meta = client.fetch(chunk, ["RFC822.SIZE", "FLAGS", "INTERNALDATE"])
            group: list[int] = []
            group_bytes = 0
            for uid in chunk:
                if uid not in meta:
                    missing.append(uid)
                    continue
                size = int(meta[uid].get(b"RFC822.SIZE", 0))
                if group and (len(group) >= cfg.batch_size or group_bytes + size > cfg.max_batch_bytes):
                    yield self._batch(client, folder, uidvalidity, fs, group, meta, missing, state, gaps)
                    group, group_bytes = [], 0
                group.append(uid)
                group_bytes += size
            if group:
                yield self._batch(client, folder, uidvalidity, fs, group, meta, missing, state, gaps)

    def _batch(self, client, folder, uidvalidity, fs, uids, meta, missing, state, gaps) -> Batch:
        small = [u for u in uids if int(meta[u].get(b"RFC822.SIZE", 0)) <= MAX_MESSAGE_BYTES]
        large = [u for u in uids if u not in small]
        bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        headers = client.fetch(large, ["BODY.PEEK[HEADER]"]) if large else {}
        items: list[RawItem] = []
        got: list[int] = []
        for uid in uids:
            m = meta[uid]
            internal = m.get(b"INTERNALDATE")
            where = {
                "folder": folder, "uid": uid, "uidvalidity": uidvalidity,
                "internaldate": _aware(internal).isoformat() if internal else None,
                "flags": sorted(_text(f) for f in m.get(b"FLAGS", ()) if f != b"\\Recent"),
            }
            external_id = f"{folder}/{uidvalidity}/{uid}"
            if uid in bodies and bodies[uid].get(b"BODY[]") is not None:
                items.append(RawItem(external_id, pack(bodies[uid][b"BODY[]"], **where)))
            elif uid in headers:
                head = headers[uid].get(b"BODY[HEADER]") or b""
                items.append(RawItem(external_id, {
                    **pack(head, **where), "error": f"message of {m.get(b'RFC822.SIZE')} bytes is larger than "
                                                    f"{MAX_MESSAGE_BYTES}: headers kept, body not fetched"}))
            else:
                missing.append(uid)
                continue
            got.append(uid)
        fs["seen"] = ranges_add(fs["seen"], got)
        fs["last_uid"] = max(fs["last_uid"], max(uids))
        return Batch(items, _copy(state), gap=_gap_text(gaps))

    # -- push -------------------------------------------------------------------------------

    def idle(self, *, folder: str = "INBOX", max_seconds: float = 29 * 60, poll: float = 30.0,
             known_uidnext: int | None = None) -> tuple[bool, int]:
        """Wait in IMAP IDLE (RFC 2177) for new mail in ``folder``. Returns (arrived, the
        folder's UIDNEXT as far as this wait saw it): ``arrived`` is True when mail came in during the wait, or before it (the
        folder's UIDNEXT grew past ``known_uidnext``: mail that arrived between two waits is not
        missed); False when ``max_seconds`` passed (the caller reconnects: servers drop IDLE
        after 30 minutes)."""
        client = self.connect()
        try:
            info = client.select_folder(folder, readonly=True)
            uidnext = int(info.get(b"UIDNEXT", 0))
            if known_uidnext is not None and uidnext > known_uidnext:
                return True, uidnext
            client.idle()
            deadline = time.monotonic() + max_seconds
            arrived = False
            try:
                while time.monotonic() < deadline and not arrived:
                    responses = client.idle_check(timeout=min(poll, max(0.1, deadline - time.monotonic())))
                    arrived = any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT")
                                  for r in responses)
            finally:
                try:
                    client.idle_done()
                except Exception:
                    pass
            if arrived:  # where the folder is now, so the next wait knows what it has seen
                uidnext = int(client.folder_status(folder, [b"UIDNEXT"]).get(b"UIDNEXT", uidnext + 1))
            return arrived, uidnext
        finally:
            self.close(client)


_DONE = object()


def _prefetched(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Run the ``batches`` generator in a helper thread, one batch ahead of the consumer.
    Its exceptions are re-raised here; closing this generator stops the helper."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in batches:
                if not put(("batch", batch)):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))
        else:
            put(("done", _DONE))
        finally:
            batches.close()

    thread = threading.Thread(target=produce, name="imap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "batch":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=30)


def _copy(state: dict) -> dict:
    return {"folders": {k: {**v, "seen": [list(r) for r in v.get("seen", [])]} for k, v in state["folders"].items()}}


def _gap_text(gaps: dict[str, str]) -> str | None:
    return "; ".join(gaps.values()) or None


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:  # imapclient gives local naive times unless normalise_times=False
        value = value.astimezone()
    return value.astimezone(dt.UTC)


def _server_words(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.strip() or type(exc).__name__
