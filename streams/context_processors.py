from __future__ import annotations

from .selectors import workspaces_for_user


def workspaces(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"user_workspaces": list(workspaces_for_user(user=user))}
