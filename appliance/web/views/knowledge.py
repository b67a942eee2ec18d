"""Knowledge base (own articles plus those parents share down) and canned answers."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from appliance.web.access import is_shared_down, object_or_404, shared_from_ancestors
from appliance.web.models.contact_center import Article, CannedAnswer
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError, canned_text, catalogue, markdown
from appliance.web.views import helpers
from appliance.web.views.helpers import form_bool, form_text, owned_or_404

knowledge = Blueprint("knowledge", __name__, url_prefix="/t/<id:tenant_id>")


@knowledge.route("/kb")
@helpers.tenant_view("agent")
def articles(tenant):
    query = (request.args.get("q") or "").strip()[:200]
    category = request.args.get("category")
    category = category[:60] if category else None
    rows = catalogue.visible_articles(tenant, drafts=helpers.can("supervisor"), query=query, category=category)
    own = [a for a in rows if a.tenant_id == tenant.id]
    shared = [a for a in rows if a.tenant_id != tenant.id]
    return render_template("kb/list.html", own=own, shared=shared, q=query, category=category,
                           categories=catalogue.categories(tenant), searched=bool(query or category))


def _readable_article(tenant, article_id) -> Article:
    """Own articles, or articles an ancestor of this tenant shares down; 404 otherwise."""
    article = object_or_404(g.principal, Article, article_id, allow_shared_read=True)
    if article.tenant_id == tenant.id:
        if not article.published and not helpers.can("supervisor"):
            abort(404)
        return article
    if not (article.published and is_shared_down(article, tenant)):
        abort(404)
    return article


@knowledge.route("/kb/<id:article_id>")
@helpers.tenant_view("agent")
def article(tenant, article_id):
    item = _readable_article(tenant, article_id)
    owner = tenant if item.tenant_id == tenant.id else Tenant.get_by_id(item.tenant_id)
    return render_template("kb/article.html", article=item, owner=owner, html=markdown.render(item.body))


def _article_form():
    return {"title": form_text("title", 300), "body": form_text("body", 60_000), "category": form_text("category", 100),
            "shared": form_bool("shared"), "published": form_bool("published")}


@knowledge.route("/kb/new", methods=["GET", "POST"])
@helpers.tenant_view("supervisor")
def new_article(tenant):
    if request.method == "GET":
        return render_template("kb/form.html", article=None, form={"published": True})
    form = _article_form()
    try:
        item = catalogue.create_article(tenant, actor_id=g.principal.user_id, **form)
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_template("kb/form.html", article=None, form=form), exc.status
    flash("Article created.", "info")
    return redirect(url_for("knowledge.article", tenant_id=tenant.id, article_id=item.id))


@knowledge.route("/kb/<id:article_id>/edit", methods=["GET", "POST"])
@helpers.tenant_view("supervisor")
def edit_article(tenant, article_id):
    # Only the owning tenant edits: shared articles are read-only below their owner.
    item = owned_or_404(Article, article_id, tenant, "supervisor")
    if request.method == "GET":
        form = {"title": item.title, "body": item.body, "category": item.category, "shared": item.shared,
                "published": item.published}
        return render_template("kb/form.html", article=item, form=form)
    form = _article_form()
    try:
        catalogue.update_article(item, actor_id=g.principal.user_id, **form)
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_template("kb/form.html", article=item, form=form), exc.status
    flash("Article saved.", "info")
    return redirect(url_for("knowledge.article", tenant_id=tenant.id, article_id=item.id))


@knowledge.route("/kb/<id:article_id>/delete", methods=["POST"])
@helpers.tenant_view("supervisor")
def delete_article(tenant, article_id):
    catalogue.delete_article(owned_or_404(Article, article_id, tenant, "supervisor"), actor_id=g.principal.user_id)
    flash("Article deleted.", "info")
    return redirect(url_for("knowledge.articles", tenant_id=tenant.id))


# --- canned answers ----------------------------------------------------------------------

def _render_canned(tenant, status=200, form=None, editing=None):
    rows = list(CannedAnswer.select().where(CannedAnswer.tenant == tenant.id).order_by(CannedAnswer.shortcut))
    inherited = list(shared_from_ancestors(CannedAnswer, tenant).select(CannedAnswer, Tenant).join(Tenant)
                     .order_by(CannedAnswer.shortcut))
    return render_template("kb/canned.html", rows=rows, inherited=inherited, form=form or {}, editing=editing,
                           variables=canned_text.NAMES), status


def _canned_form():
    return {"shortcut": form_text("shortcut", 100), "title": form_text("title", 200), "body": form_text("body", 6000),
            "shared": form_bool("shared")}


@knowledge.route("/canned")
@helpers.tenant_view("agent")
def canned(tenant):
    return _render_canned(tenant)


@knowledge.route("/canned", methods=["POST"])
@helpers.tenant_view("supervisor")
def create_canned(tenant):
    form = _canned_form()
    try:
        catalogue.create_canned(tenant, actor_id=g.principal.user_id, **form)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_canned(tenant, exc.status, form)
    flash("Canned answer created.", "info")
    return redirect(url_for("knowledge.canned", tenant_id=tenant.id))


@knowledge.route("/canned/<id:canned_id>/edit", methods=["GET", "POST"])
@helpers.tenant_view("supervisor")
def edit_canned(tenant, canned_id):
    # Only the owning tenant edits: shared answers are read-only below their owner.
    item = owned_or_404(CannedAnswer, canned_id, tenant, "supervisor")
    if request.method == "GET":
        form = {"shortcut": item.shortcut, "title": item.title, "body": item.body, "shared": item.shared}
        return _render_canned(tenant, form=form, editing=item)
    form = _canned_form()
    try:
        catalogue.update_canned(item, actor_id=g.principal.user_id, **form)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_canned(tenant, exc.status, form, editing=item)
    flash("Canned answer saved.", "info")
    return redirect(url_for("knowledge.canned", tenant_id=tenant.id))


@knowledge.route("/canned/<id:canned_id>/delete", methods=["POST"])
@helpers.tenant_view("supervisor")
def delete_canned(tenant, canned_id):
    catalogue.delete_canned(owned_or_404(CannedAnswer, canned_id, tenant, "supervisor"), actor_id=g.principal.user_id)
    flash("Canned answer deleted.", "info")
    return redirect(url_for("knowledge.canned", tenant_id=tenant.id))
