"""The dashboard page."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from web.auth import given_token
from web.state import state

bp = Blueprint("pages", __name__, static_folder="static", static_url_path="/static", template_folder="templates")


@bp.route("/")
def index():
    """The dashboard: a tile per configured camera."""
    st = state()
    cameras = [{"id": c.id, "name": c.display_name, "events": c.events_enabled} for c in st.settings.cameras]
    # With auth on, the request that reached us carried the token; the page passes it on to its
    # stylesheet, script, feeds and API calls (an <img> cannot send a header, so it goes in the URL).
    token = given_token(request) if st.settings.web.token else ""

    def asset(filename: str) -> str:
        return url_for("pages.static", filename=filename, **({"token": token} if token else {}))

    return render_template("index.html", cameras=cameras, token=token, asset=asset)
