"""The user's own account: name, TOTP enrolment, password, sessions, invitations to other tenants."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for

from appliance.web.auth import check_second_factor, login_required, must_change_password, must_enrol
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import User
from appliance.web.services import ServiceError, invitations, lifecycle, sessions
from appliance.web.services import totp as totp_service
from appliance.web.services.passwords import check_strength, hash_password, verify_password

account = Blueprint("account", __name__, url_prefix="/account")


def _page(status=200, **extra):
    user = g.user
    return render_template(
        "account/index.html", enrolled=totp_service.is_enrolled(user), must_enrol=must_enrol(user),
        must_change_password=must_change_password(user),
        codes_left=totp_service.recovery_codes_left(user), sessions=sessions.live_sessions(user.id),
        invitations=invitations.pending_for(user), now=utcnow(), **extra), status


@account.route("")
@login_required
def index():
    return _page()


@account.route("/totp")
@login_required
def totp():
    if must_enrol(g.user):
        flash("Your role needs two-factor login: set up an authenticator app to continue.", "error")
    if totp_service.is_enrolled(g.user):
        return redirect(url_for("account.index"))
    try:
        enrolment = totp_service.enrolment(g.user)
    except ServiceError:
        enrolment = None
    return render_template("account/totp.html", enrolment=enrolment)


@account.route("/totp/start", methods=["POST"])
@login_required
def totp_start():
    try:
        enrolment = totp_service.begin(g.user)
    except ServiceError as exc:
        flash(str(exc), "error")
        return redirect(url_for("account.index"))
    return render_template("account/totp.html", enrolment=enrolment)


@account.route("/totp/confirm", methods=["POST"])
@login_required
def totp_confirm():
    try:
        codes = totp_service.confirm(g.user, (request.form.get("code") or "")[:20])
    except ServiceError as exc:
        flash(str(exc), "error")
        try:
            enrolment = totp_service.enrolment(g.user)
        except ServiceError:
            enrolment = None
        return render_template("account/totp.html", enrolment=enrolment), exc.status
    # A new factor: other sessions were opened without it.
    sessions.end_all(g.user.id, keep_sid=session.get("sid"), actor_id=g.user.id, reason="totp-enrolled")
    flash("Two-factor login is on. Store the recovery codes below somewhere safe: they are shown only now.", "info")
    return render_template("account/recovery_codes.html", codes=codes), 201


@account.route("/recovery-codes", methods=["POST"])
@login_required
def recovery_codes():
    if not check_second_factor(g.user, (request.form.get("code") or "")[:40]):
        flash("Enter a current code from your app to make new recovery codes.", "error")
        return _page(401)
    return render_template("account/recovery_codes.html", codes=totp_service.new_recovery_codes(g.user)), 201


@account.route("/password", methods=["POST"])
@login_required
def password():
    user: User = g.user
    if not verify_password(user.password_hash, (request.form.get("current") or "")[:1000]):
        flash("Your current password is not right.", "error")
        return _page(401)
    new = (request.form.get("new") or "")[:1000]
    problem = check_strength(new)
    if problem:
        flash(problem, "error")
        return _page(422)
    if user.must_change_password and verify_password(user.password_hash, new):
        flash("Choose a password of your own, not the one you were given.", "error")
        return _page(422)
    User.update(password_hash=hash_password(new), must_change_password=False).where(User.id == user.id).execute()
    ended = sessions.end_all(user.id, keep_sid=session.get("sid"), actor_id=user.id, reason="password-change")
    flash(f"Password changed; {ended} other session(s) signed out.", "info")
    return redirect(url_for("account.index"))


@account.route("/name", methods=["POST"])
@login_required
def name():
    try:
        lifecycle.rename_self(g.user, (request.form.get("name") or "")[:200])
    except ServiceError as exc:
        flash(str(exc), "error")
        return _page(exc.status)
    flash("Name changed.", "info")
    return redirect(url_for("account.index"))


@account.route("/sessions/end-others", methods=["POST"])
@login_required
def end_other_sessions():
    ended = sessions.end_all(g.user.id, keep_sid=session.get("sid"), actor_id=g.user.id)
    flash(f"{ended} other session(s) signed out.", "info")
    return redirect(url_for("account.index"))


@account.route("/invitations", methods=["POST"])
@login_required
def answer_invitation():
    raw = request.form.get("invitation_id", "")
    decision = request.form.get("decision")
    if not (raw.isdigit() and len(raw) <= 18) or decision not in ("accept", "decline"):
        flash("Pick an invitation and accept or decline it.", "error")
        return _page(400)
    try:
        member = invitations.answer(g.user, int(raw), decision == "accept")
    except ServiceError as exc:
        flash(str(exc), "error")
        return _page(exc.status)
    if member is not None:
        flash("Invitation accepted.", "info")
        return redirect(url_for("inbox.index", tenant_id=member.tenant_id))
    flash("Invitation declined." if decision == "decline" else "You are a member already.", "info")
    return redirect(url_for("account.index"))
