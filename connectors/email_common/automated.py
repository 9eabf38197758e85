"""Automated mail: newsletters, notifications, bounces, auto-replies.

It is imported like any mail and marked ``automated`` with the reasons in ``extra``; Mesh then
creates no new contacts from it unless the workspace opts in, so newsletters do not fill the
CRM with fake people. The checks follow RFC 3834 (Auto-Submitted), RFC 2919/2369 (List-Id,
List-Unsubscribe), RFC 3464 (delivery status notifications) and what large senders do in
practice (Precedence, no-reply addresses, X-Autoreply, out-of-office subjects).
"""

from __future__ import annotations

import re

NO_REPLY_LOCAL = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer[-_.]?daemon|postmaster|bounces?|"
    r"notifications?|automailer|auto[-_.]?confirm|newsletter)([-+_.].*)?$",
    re.I,
)
AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheitsnotiz|"
    r"réponse automatique|respuesta automática|risposta automatica|autosvar|frånvaro)\b",
    re.I,
)
BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliver(ed|able)|delivery status notification|mail delivery (failed|subsystem)|"
    r"returned mail|failure notice|delivery failure)",
    re.I,
)


def automated_reasons(headers: dict[str, str], *, sender: str, content_type: str, report_type: str,
                      subject: str) -> list[str]:
    """Why this message is automated (empty: a person wrote it). ``headers`` are lower-cased
    names to decoded first values."""
    reasons: list[str] = []
    auto = headers.get("auto-submitted", "").strip().lower()
    if auto and not auto.startswith("no"):
        reasons.append(f"auto-submitted: {auto.split(';')[0]}")
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        reasons.append(f"precedence: {precedence}")
    if headers.get("list-id"):
        reasons.append("list-id")
    if headers.get("list-unsubscribe"):
        reasons.append("list-unsubscribe")
    for name in ("x-autoreply", "x-autorespond", "x-autoresponse"):
        if headers.get(name):
            reasons.append(name)
    local = sender.split("@")[0] if "@" in sender else ""
    if local and NO_REPLY_LOCAL.match(local):
        reasons.append("no-reply sender")
    if content_type == "multipart/report" and report_type == "delivery-status":
        reasons.append("delivery status notification")
    elif BOUNCE_SUBJECT.match(subject) and (not sender or (local and NO_REPLY_LOCAL.match(local))):
        reasons.append("bounce")
    if headers.get("return-path", "").strip() == "<>" and "delivery status notification" not in reasons:
        reasons.append("null return path")
    if AUTO_REPLY_SUBJECT.match(subject):
        reasons.append("auto-reply subject")
    return reasons
