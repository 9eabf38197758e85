from __future__ import annotations

from .selectors import workspaces_for_user


def workspaces(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # The view's member_workspace read them already on most pages: one query, not two.
    listed = getattr(request, "mesh_workspaces", None)
    return {"user_workspaces": listed if listed is not None else list(workspaces_for_user(user=user))}
