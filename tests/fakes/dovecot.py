"""A throw-away Dovecot for the IMAP tests: its own config, Maildirs, passwd-file and logs in a
temporary directory, listening on a free loopback port (plaintext, loopback only).

    server = Dovecot.start()          # a few hundred ms
    user, password = server.add_user()  # a fresh, empty mailbox per test
    ...
    server.stop()

Needs Debian's dovecot-imapd (``/usr/sbin/dovecot``, or ``MESH_DOVECOT``; tests/run_suite.py
refuses to run without it, ``.ci/run`` installs it).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.run_suite import DOVECOT, free_port

POOL = 200

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
{plaintext}
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u/Maildir
first_valid_uid = 0
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
  default_fields = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
"""


def _version() -> tuple[int, ...]:
    out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(p) for p in out.split()[0].split(".")[:2])


def _self_signed(root: Path) -> None:
    """A certificate for 127.0.0.1 / localhost (its own CA: clients trust it with ca_file)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    os.chmod(root / "key.pem", 0o600)


class Dovecot:
    def __init__(self, root: Path, port: int):
        self.root = root
        self.port = port
        self.host = "127.0.0.1"
        self._pool: list[tuple[str, str]] = []

    @classmethod
    def start(cls) -> Dovecot:
        if not os.access(DOVECOT, os.X_OK):
            raise RuntimeError(f"{DOVECOT} is not installed: apt-get install dovecot-imapd")
        root = Path(tempfile.mkdtemp(prefix="mesh-dovecot-"))
        os.chmod(root, 0o755)
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        port = free_port()
        ssl_port = free_port()
        _self_signed(root)
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:
            internal, login = "dovecot", "dovenull"
            try:
                pwd.getpwnam("dovenull")
            except KeyError:
                login = "dovecot"
        else:
            internal = login = me.pw_name
        # Mail is owned by an unprivileged user (Dovecot refuses uid 0 for mail access).
        mail_uid, mail_gid = (pwd.getpwnam(internal).pw_uid, pwd.getpwnam(internal).pw_gid) if os.getuid() == 0 \
            else (os.getuid(), os.getgid())
        os.chown(root / "mail", mail_uid, mail_gid)
        plaintext = "auth_allow_cleartext = yes" if _version() >= (2, 4) else "disable_plaintext_auth = no"
        conf = root / "dovecot.conf"
        conf.write_text(CONFIG.format(root=root, port=port, ssl_port=ssl_port, uid=mail_uid, gid=mail_gid, internal=internal,
                                      internal_group=grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name,
                                      login=login, plaintext=plaintext))
        # Users are made up front: Dovecot re-reads passwd-file only when its mtime (seconds)
        # changes, so users appended within one second of each other could be missed.
        pool = [(f"user{n}-{secrets.token_hex(3)}@mesh.example", secrets.token_urlsafe(12)) for n in range(1, POOL + 1)]
        (root / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in pool))
        server = cls(root, port)
        server.ssl_port = ssl_port
        server.ca_file = str(root / "cert.pem")
        server._pool = pool
        server.conf = conf
        # The daemon inherits our stdio: give it files, not pipes (a pipe would never close).
        with open(root / "startup.log", "w") as out:
            proc = subprocess.run([DOVECOT, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        if proc.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {(root / 'startup.log').read_text()}{server.log()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return server
            except OSError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError(f"dovecot did not answer on port {port}: {server.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def add_user(self) -> tuple[str, str]:
        """A new user with an empty mailbox: (username, password)."""
        if not self._pool:
            raise RuntimeError(f"more than {POOL} users asked of one throw-away Dovecot")
        return self._pool.pop(0)

    def client(self, user: str, password: str):
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(user, password)
        return client

    def stop(self) -> None:
        subprocess.run([DOVECOT, "-c", str(self.root / "dovecot.conf"), "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pidfile = self.root / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)
