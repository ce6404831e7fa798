"""The dashboard page."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from web.app import state

bp = Blueprint("pages", __name__, static_folder="static", static_url_path="/static", template_folder="templates")


@bp.route("/")
def index():
    st = state()
    cameras = [{"id": c.id, "name": c.display_name} for c in st.settings.cameras]
    # The token (when auth is on) reached us in the URL; the page passes it on to its own requests.
    return render_template("index.html", cameras=cameras, token=request.args.get("token", ""))
