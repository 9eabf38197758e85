"""An item's attachment, for the members of its workspace (anyone else: 404):
``/activities/<id>/attachments/<n>``, a download; ``?inline=1`` shows it in the browser when its
bytes are an image (``streams.attachments``)."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_safe

from .. import selectors
from ..attachments import (
    AttachmentUnavailable,
    attachment_read,
    download_name,
    download_type,
    image_type,
)
from ..models import Activity

# No script, no plug-in, no request of its own, no same-origin access, whatever the file is.
ATTACHMENT_CSP = "sandbox; default-src 'none'"


@login_required
@require_safe
def activity_attachment(request: HttpRequest, activity_id: int, index: int) -> HttpResponse:
    activity = get_object_or_404(
        Activity.objects.filter(selectors.visible_q(), workspace__memberships__user=request.user)
        .select_related("source"),
        pk=activity_id,
    )
    try:
        attachment = attachment_read(activity=activity, index=index)
    except AttachmentUnavailable as exc:
        response = HttpResponse(exc.message + "\n", status=exc.status, content_type="text/plain; charset=utf-8")
        response["X-Content-Type-Options"] = "nosniff"
        return response
    shown_as = image_type(attachment.data) if request.GET.get("inline") == "1" else None
    response = HttpResponse(attachment.data, content_type=shown_as or download_type(attachment.content_type))
    filename = quote(download_name(attachment.filename, index), safe="")
    response["Content-Disposition"] = f"{'inline' if shown_as else 'attachment'}; filename*=UTF-8''{filename}"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = ATTACHMENT_CSP
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, max-age=300"
    return response
