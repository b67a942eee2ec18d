"""Response schemas for the OpenAPI document: what each API answer holds.

Declared once per resource, here, next to nothing else: ``@spec(..., response=...)``
names one of them and ``openapi_document`` publishes it, so clients (and the fuzz test,
which checks every answer against it) know the shape of a success. Answers may carry more
keys than listed (``additionalProperties`` stays open for forward compatibility), never
fewer or of another type.
"""

from __future__ import annotations


def string(nullable=False, **extra) -> dict:
    return {"type": "string", **({"nullable": True} if nullable else {}), **extra}


def integer(nullable=False) -> dict:
    return {"type": "integer", **({"nullable": True} if nullable else {})}


def boolean() -> dict:
    return {"type": "boolean"}


def obj(required=True, **properties) -> dict:
    """An object with these properties, all of them present unless ``required`` is False."""
    out = {"type": "object", "properties": properties}
    if required and properties:
        out["required"] = sorted(properties)
    return out


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def page(item: dict) -> dict:
    """A list answer: ``items`` and the cursor for the next page (null: the last page)."""
    return obj(items=array(item), next_cursor=string(nullable=True))


TIME = string(format="date-time")

TENANT = obj(id=integer(), parent_id=integer(nullable=True), level=integer(), kind=string(), name=string(),
             slug=string(), brand_color=string(nullable=True), is_active=boolean(), mask_card_numbers=boolean(),
             deactivated_at=string(nullable=True, format="date-time"), own_branding=boolean(), created_at=TIME)
USER = obj(id=integer(), email=string(), name=string(), is_active=boolean())
MEMBER = obj(id=integer(), user=USER, tenant_id=integer(), role=string(), shared=boolean(), available=boolean(),
             takes_conversations=boolean(), capacity=integer(nullable=True))
# The same answer whether the address had an account or not (it must not tell which).
MEMBER_ADDED = obj(email=string(), tenant_id=integer(), role=string(), status=string(), message=string())
TOKEN = obj(id=integer(), tenant_id=integer(), name=string(), role=string(), prefix=string(), revoked=boolean(),
            created_at=TIME)
NEW_TOKEN = {**TOKEN, "properties": {**TOKEN["properties"], "token": string()},
             "required": sorted([*TOKEN["required"], "token"])}
CHANNEL = obj(id=integer(), tenant_id=integer(), kind=string(), name=string(), public_key=string(),
              team_id=integer(nullable=True), shared=boolean(), is_active=boolean())
NEW_CHANNEL = {**CHANNEL, "properties": {**CHANNEL["properties"], "signing_secret": string()}}
TEAM = obj(id=integer(), tenant_id=integer(), name=string(), member_ids=array(integer()))
ROUTING = obj(tenant_id=integer(), agent_capacity=integer(nullable=True))
ASSIGNEE = obj(id=integer(), name=string(), email=string(), status=string(enum=["online", "away", "offline"]),
               open=integer())
ASSIGNEES = obj(conversation_id=integer(), assignee_id=integer(nullable=True), team_id=integer(nullable=True),
                people=array(ASSIGNEE), teams=array(obj(id=integer(), name=string())))
CONTACT = obj(id=integer(), tenant_id=integer(), name=string(nullable=True), email=string(nullable=True),
              phone=string(nullable=True), notes=string(nullable=True), verified=boolean(), created_at=TIME)
CONVERSATION = obj(id=integer(), tenant_id=integer(), channel_id=integer(nullable=True), contact_id=integer(),
                   status=string(), assignee_id=integer(nullable=True), team_id=integer(nullable=True),
                   subject=string(nullable=True), message_count=integer(),
                   waiting_since=string(nullable=True, format="date-time"), created_at=TIME, last_message_at=TIME,
                   priority=string(enum=["low", "normal", "high", "urgent"]),
                   snoozed_until=string(nullable=True, format="date-time"), last_direction=string(nullable=True))
LABEL = obj(id=integer(), tenant_id=integer(), name=string(), color=string(), shared=boolean())
# The inbox's rows: the conversation with what the row shows for the token's user.
# ``preview``: the newest message's first line, card numbers masked where the tenant masks them.
INBOX_ROW = {**CONVERSATION, "properties": {**CONVERSATION["properties"], "unread": boolean(),
                                             "labels": array(LABEL), "preview": string(nullable=True)},
             "required": sorted([*CONVERSATION["required"], "unread", "labels", "preview"])}
CONVERSATION_LABELS = obj(conversation_id=integer(), labels=array(LABEL))
READ_STATE = obj(conversation_id=integer(), unread=boolean())
MESSAGE = obj(id=integer(), conversation_id=integer(), direction=string(), author_id=integer(nullable=True),
              body=string(), created_at=TIME)
CANNED = obj(id=integer(), tenant_id=integer(), shortcut=string(), title=string(), body=string(), shared=boolean())
CANNED_FILLED = {**CANNED, "properties": {**CANNED["properties"], "text": string()},
                 "required": sorted([*CANNED["required"], "text"])}
ARTICLE = obj(id=integer(), tenant_id=integer(), title=string(), body=string(), category=string(), shared=boolean(),
              published=boolean())
ARTICLE_HTML = obj(id=integer(), html=string())
DELETED = obj(deleted=integer())
BRANDING = obj(tenant_id=integer(), own_branding=boolean(), from_tenant_id=integer(), brand_color=string(),
               logo=string(nullable=True))
PASSWORD_RESET = obj(user_id=integer(), expires_at=TIME, delivery=string(enum=["shown", "email"]),
                     link=string(nullable=True), message=string())
ME = obj(token=TOKEN, tenant=TENANT)

PROGRAM = obj(tenant_id=integer(), program=string(), assigned_at=TIME, effective_from=TIME)
PROGRAMS = obj(items=array(PROGRAM), usable=array(string()))
PROGRAM_REMOVED = obj(removed=string())
LICENCE_STATE = {**obj(status=string(), tenant_programs=array(string())),
                 "description": "Provider admins get the full report (limits, use, history) as well"}
LICENCE_INSTALLED = obj(installed=boolean(), licence=obj(licence_id=string(), expires_at=string()))

# Attachments, channels, e-mail, sessions and TOTP, the business layer. Where an answer's
# shape belongs to a service that may grow, only the keys a client relies on are listed.
ATTACHMENT = obj(id=integer(), message_id=integer(), filename=string(), content_type=string(), size=integer())
MESSAGE_WITH_FILES = {**MESSAGE, "properties": {**MESSAGE["properties"], "attachments": array(ATTACHMENT)}}
ATTACHMENTS = page(ATTACHMENT)
FILE_CONTENT = {"type": "string", "format": "binary", "description": "The file's bytes, as an attachment download"}
CHANNEL_SETTINGS = obj(required=False)
CHANNEL_TEST = obj(required=False)
SIGNING_SECRET = obj(channel_id=integer(), signing_secret=string(),
                     previous_valid_until=string(nullable=True, format="date-time"))
RETRIED = obj(message_id=integer(), delivery=obj(state=string(), attempts=integer()))
EMAIL_STATUS = obj(required=False)
QUARANTINE = obj(items=array(obj(required=False)))
DONE = obj(required=False)
BUSINESS_PRICES = obj(prices=array(obj(program=string(), effective_from=string(), per_seat=boolean())),
                      currency=string())
BUSINESS_PRICE = obj(program=string(), effective_from=string(), per_seat=boolean())
BUSINESS_CONTRACT = obj(id=integer(), account_id=integer(), status=string(), starts_on=string(), ends_on=string(),
                        renewal=string(), lines=array(obj(program=string(), seats=integer(), per_seat=boolean())))
BUSINESS_CONTRACTS = obj(contracts=array(BUSINESS_CONTRACT))
BUSINESS_CHANGE = obj(id=integer(), account_id=integer(), kind=string(), effective_on=string(), state=string())
BUSINESS_CHANGES = obj(changes=array(BUSINESS_CHANGE))
BUSINESS_USAGE = obj(days=array(obj(day=string(), tenant_id=integer(), conversations=integer(),
                                    messages_in=integer(), messages_out=integer())))
BUSINESS_INVOICE = obj(id=integer(), number=integer(nullable=True), kind=string(), status=string(),
                       total_minor=integer(), currency=string())
BUSINESS_INVOICES = obj(required=False, invoices=array(BUSINESS_INVOICE))
BUSINESS_STATEMENT = obj(start=string(), end=string(), opening_minor=integer(), closing_minor=integer(),
                         entries=array(obj(date=string(), text=string(), amount_minor=integer())))
BUSINESS_RUN = obj(invoices=array(BUSINESS_INVOICE))
BUSINESS_PAYMENT = obj(id=integer(), amount_minor=integer())
BUSINESS_APPLICATION = obj(id=integer(), account_id=integer(nullable=True), state=string(), lines=string(),
                           starts_on=string(), quote_monthly_minor=integer(), quote_setup_minor=integer(),
                           contract_id=integer(nullable=True), created_at=string())
BUSINESS_APPLICATIONS = obj(applications=array(BUSINESS_APPLICATION))
BUSINESS_QUOTAS = obj(account_id=integer(), contract_seats=integer(nullable=True), used=integer(),
                      quotas=array(obj(tenant_id=integer(), name=string(), quota=integer(nullable=True),
                                       used=integer())))

# Reports and the supervisor's view. Durations in seconds, null where nothing was measured.
def _seconds() -> dict:
    return integer(nullable=True)


FIGURES = dict(opened=integer(), resolved=integer(), messages_in=integer(), messages_out=integer(),
               first_responses=integer(), first_response_median=_seconds(), first_response_p90=_seconds(),
               resolution_median=_seconds(), resolution_p90=_seconds())
REPORT_ROW = obj(id=integer(nullable=True), name=string(), **FIGURES)
REPORT = obj(tenant_id=integer(), subaccount_id=integer(nullable=True), grain=string(), totals=obj(**FIGURES),
             series=array(obj(period=string(), **FIGURES)), channels=array(REPORT_ROW), teams=array(REPORT_ROW),
             agents=array(REPORT_ROW), **{"from": string(), "to": string()})
QUEUE = obj(id=integer(nullable=True), name=string(), waiting=integer(), unassigned=integer(),
            longest_wait_seconds=_seconds())
CHECK = obj(level=string(enum=["ok", "warn", "error"]), detail=string())
DASHBOARD = obj(
    tenants=obj(accounts=integer(), subaccounts=integer(), inactive=integer()),
    licence=obj(status=string(), title=string(), days_left=integer(nullable=True), tenants_used=integer(),
                tenants_allowed=integer(), seats_used=integer(), seats_allowed=integer()),
    conversations=obj(today_opened=integer(), today_resolved=integer(),
                      series=array(obj(day=string(format="date"), opened=integer(), resolved=integer()))),
    channels=obj(total=integer(), failed_replies_24h=integer(),
                 failing=array(obj(channel_id=integer(), channel=string(), kind=string(), tenant_id=integer(),
                                   tenant=string(), error=string(nullable=True), error_at=string(nullable=True),
                                   failed_replies=integer()))),
    worker=CHECK, sync=CHECK)
SUPERVISOR = obj(tenant_id=integer(), teams=array(QUEUE), channels=array(QUEUE),
                 agents=array(obj(id=integer(), name=string(), email=string(), role=string(), available=boolean(),
                                  status=string(), open=integer())))
