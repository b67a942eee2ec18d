"""Do the report pages and the supervisor's view stay fast at ten million messages?

Reports read only the pre-aggregated ``report_day`` rows and the supervisor's view only
the open conversations, so this bench generates those directly (the point is the query
cost, not how the rows got there): an account with sub-accounts, channels, teams and
agents, one row per tenant, local day and channel/team/agent, whose message counts add
up to the target; other accounts beside it for volume; and conversations, a few open,
for the queues. It measures full HTTP requests through the app (login, access checks,
queries, SVG, HTML/CSV/JSON) on a small data set, grows the same SQLite database to the
large one and measures again. Prints wall-clock p95 and median CPU milliseconds per request and
the large/small ratio of the p95s; the goal is a ratio near 1.

    python bench/bench_reports.py                         # 10,000,000 messages
    python bench/bench_reports.py --messages 1000000      # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import PASSWORD, csrf_token, make_instance

SUBACCOUNTS, CHANNELS, TEAMS, AGENTS = 10, 3, 3, 20
OTHER_ACCOUNTS = 4  # beside the measured tree, with rows of their own
MESSAGES_PER_CONVERSATION = 5
OPEN_SHARE = 0.02  # of all conversations, still open
SMALL_DAYS = 30
BATCH = 20_000


def build_tree(provider, name, digest, tenants_service):
    """An account with sub-accounts; each with channels, teams and agents. Returns [(tenant, dims)]."""
    from appliance.web.models.contact_center import Channel, Team
    from appliance.web.models.tenancy import Membership, User

    account = tenants_service.create_child(provider, name, "enterprise")
    out = []
    for n in range(SUBACCOUNTS):
        sub = tenants_service.create_child(account, f"{name} country {n}", "country_team")
        channels = [Channel.create(tenant=sub, kind="webchat", name=f"chat {n}.{c}").id for c in range(CHANNELS)]
        teams = [Team.create(tenant=sub, name=f"team {n}.{t}").id for t in range(TEAMS)]
        agents = []
        for a in range(AGENTS):
            user = User.create(email=f"agent{a}.{n}@{account.slug}.bench", name=f"Agent {a}.{n}",
                               password_hash=digest)
            Membership.create(user=user, tenant=sub, role="agent")
            agents.append(user.id)
        out.append((sub, channels, teams, agents))
    return account, out


def day_rows(tenant_id, day, channels, teams, agents, messages, rng):
    """The rows of one tenant-day holding ``messages`` messages, split over its channels, teams, agents."""
    from appliance.web.models.reports import BUCKETS

    buckets = len(BUCKETS) + 1
    opened = max(1, messages // MESSAGES_PER_CONVERSATION)

    def figures(share):
        fr = [0] * buckets
        rs = [0] * buckets
        count = max(0, round(opened * share))
        for _ in range(min(count, 40)):  # a plausible spread; totals need not match exactly
            fr[rng.randrange(0, 9)] += max(1, count // 40)
            rs[rng.randrange(4, buckets)] += max(1, count // 40)
        row = {"opened": count, "resolved": count, "messages_in": round(messages * share / 2),
               "messages_out": round(messages * share / 2), "first_responses": count,
               "first_response_seconds": count * 300, "resolution_seconds": count * 7200}
        row.update({f"fr_{i:02d}": v for i, v in enumerate(fr)})
        row.update({f"rs_{i:02d}": v for i, v in enumerate(rs)})
        return row

    rows = [{"tenant_id": tenant_id, "day": day, "dimension": "all", "key": 0, **figures(1.0)}]
    for dimension, keys in (("channel", channels), ("team", [*teams, 0]), ("agent", agents)):
        shares = [rng.random() + 0.2 for _ in keys]
        total = sum(shares)
        rows += [{"tenant_id": tenant_id, "day": day, "dimension": dimension, "key": key, **figures(s / total)}
                 for key, s in zip(keys, shares, strict=True)]
    return rows


def _insert(database, table: str, rows: list[dict]) -> None:
    """Plain executemany: the bench loads rows as fast as SQLite takes them."""
    if not rows:
        return
    columns = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    with database.atomic():
        database.cursor().executemany(sql, [tuple(r[c] for c in columns) for r in rows])


def load_reports(database, trees, days, messages_per_tenant_day, rng) -> int:
    from appliance.web.models.base import utcnow

    now, written, pending = utcnow().isoformat(" "), 0, []
    for day in days:
        for sub, channels, teams, agents in trees:
            pending += [{**r, "day": day.isoformat(), "computed_at": now}
                        for r in day_rows(sub.id, day, channels, teams, agents, messages_per_tenant_day, rng)]
        if len(pending) >= BATCH:
            _insert(database, "report_day", pending)
            written, pending = written + len(pending), []
    _insert(database, "report_day", pending)
    return written + len(pending)


def load_conversations(database, trees, contact_ids, count, rng) -> None:
    """Conversations of the measured tree (no messages: the supervisor's view never reads them)."""
    from appliance.web.models.base import utcnow

    now = utcnow()
    for first in range(0, count, BATCH):
        rows = []
        for i in range(first, min(count, first + BATCH)):
            sub, channels, teams, agents = trees[i % len(trees)]
            is_open = rng.random() < OPEN_SHARE
            rows.append({"tenant_id": sub.id, "uid": uuid.UUID(int=rng.getrandbits(128)).hex,
                         "channel_id": rng.choice(channels), "contact_id": contact_ids[sub.id],
                         "status": "open" if is_open else "resolved", "team_id": rng.choice([*teams, None]),
                         "assignee_id": None if is_open and rng.random() < 0.2 else rng.choice(agents),
                         "message_count": MESSAGES_PER_CONVERSATION,
                         "created_at": (now - dt.timedelta(seconds=rng.randrange(0, 30 * 86400))).isoformat(" "),
                         "last_message_at": (now - dt.timedelta(seconds=rng.randrange(0, 86400))).isoformat(" ")})
        _insert(database, "conversation", rows)


def measure(client, paths: dict, repeats: int) -> dict:
    out = {}
    for label, path in paths.items():
        client.get(path)  # warm caches
        times, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            resp = client.get(path)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            assert resp.status_code == 200, (label, resp.status_code)
        times.sort()
        # The machine is shared: CPU time per request shows the work, wall-clock p95 what a user waits.
        out[label] = (times[max(0, round(0.95 * len(times)) - 1)], statistics.median(times), statistics.median(cpu))
    return out


def logged_in(app):
    client = app.test_client()
    client.post("/login", data={"email": "supervisor@bench.test", "password": PASSWORD,
                                "csrf_token": csrf_token(client)})
    return client


def paths_for(account_id: int, sub_id: int, on: dt.date, days: int) -> dict:
    base = f"/t/{account_id}"
    year = f"from={on - dt.timedelta(days=days - 1)}&to={on + dt.timedelta(days=1)}"
    return {
        "reports, last 30 days by day": f"{base}/reports",
        "reports, a year by month": f"{base}/reports?{year}&grain=month",
        "reports, a year by week, one sub-account": f"{base}/reports?{year}&grain=week&subaccount={sub_id}",
        "reports CSV, per agent, a year": f"{base}/reports.csv?{year}&table=agents",
        "supervisor view": f"{base}/supervisor",
    }


def measure_again(home: Path, days: int, repeats: int) -> None:
    """--reuse: measure a large database an earlier run left behind (after a code change)."""
    from appliance.core.calendar import today, zone
    from appliance.core.config import Instance
    from appliance.web import create_app
    from appliance.web.models.tenancy import Tenant

    instance = Instance.load(home)
    app = create_app(instance=instance)
    with app.app_context(), app.extensions["database"].connection_context():
        account = Tenant.get(Tenant.name == "Bench bank")
        sub = Tenant.select().where(Tenant.parent == account.id).order_by(Tenant.id)[3]
    on = today(zone(instance.settings))
    print(f"{'request (ms)':44} {'p95':>9} {'cpu':>9}")
    for label, (p95, _, cpu) in measure(logged_in(app), paths_for(account.id, sub.id, on, days), repeats).items():
        print(f"{label:44} {p95:9.1f} {cpu:9.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000_000, help="messages in the measured account's tree")
    parser.add_argument("--days", type=int, default=365, help="days of history in the large data set")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--reuse", type=Path, help="HOME of an earlier run: measure its large data set again")
    args = parser.parse_args()
    if args.reuse:
        measure_again(args.reuse, args.days, args.repeats)
        return

    from appliance.core.calendar import today, zone
    from appliance.web import create_app
    from appliance.web.models.contact_center import Contact
    from appliance.web.models.reports import ReportDay
    from appliance.web.models.tenancy import Membership, User
    from appliance.web.services import contacts, licence, tenants
    from appliance.web.services.passwords import hash_password

    # The evaluation licence allows 10 tenants; the bench needs a few hundred and no licence file.
    licence.check_can_create_tenant = lambda *a, **k: None

    home = Path(tempfile.mkdtemp(prefix="bench-reports-")) / "home"
    instance = make_instance(home, "sqlite:///appliance.db")
    app = create_app(instance=instance)
    database = app.extensions["database"]
    rng = random.Random(1)
    on = today(zone(instance.settings))
    all_days = [on - dt.timedelta(days=n) for n in range(args.days)]
    per_tenant_day = max(1, args.messages // (SUBACCOUNTS * args.days))
    with app.app_context(), database.connection_context():
        provider = tenants.create_provider("Bench provider")
        digest = hash_password(PASSWORD)
        account, tree = build_tree(provider, "Bench bank", digest, tenants)
        others = []
        for n in range(OTHER_ACCOUNTS):
            others += build_tree(provider, f"Other {n}", digest, tenants)[1]
        boss = User.create(email="supervisor@bench.test", name="Supervisor", password_hash=digest)
        Membership.create(user=boss, tenant=account, role="supervisor")
        contact_ids = {sub.id: contacts.create_contact(sub, name="Customer").id for sub, *_ in tree}
        small_rows = load_reports(database, tree + others, all_days[:SMALL_DAYS], per_tenant_day, rng)
        small_convs = per_tenant_day * SUBACCOUNTS * SMALL_DAYS // MESSAGES_PER_CONVERSATION // 30
        load_conversations(database, tree, contact_ids, small_convs, rng)
        database.execute_sql("ANALYZE")

    client = logged_in(app)
    paths = paths_for(account.id, tree[3][0].id, on, args.days)
    small = measure(client, paths, args.repeats)
    for label, (p95, _, cpu) in small.items():
        print(f"small: {label}: p95 {p95:.1f} ms, cpu {cpu:.1f} ms", flush=True)

    t = time.perf_counter()
    with app.app_context(), database.connection_context():
        load_reports(database, tree + others, all_days[SMALL_DAYS:], per_tenant_day, rng)
        conversations = args.messages // MESSAGES_PER_CONVERSATION
        load_conversations(database, tree, contact_ids, conversations - small_convs, rng)
        database.execute_sql("ANALYZE")
        rows = ReportDay.select().count()
        in_tree = (ReportDay.select().where(ReportDay.tenant.in_([s.id for s, *_ in tree]),
                                            ReportDay.dimension == "all").count())
        measured = sum(r.messages_in + r.messages_out for r in ReportDay.select(
            ReportDay.messages_in, ReportDay.messages_out).where(
            ReportDay.tenant.in_([s.id for s, *_ in tree]), ReportDay.dimension == "all"))
        n_contacts = Contact.select().count()
    load_s = time.perf_counter() - t
    large = measure(client, paths, args.repeats)

    print(f"\nReports on SQLite: the measured account holds {measured:,} messages over {args.days} days "
          f"({in_tree:,} tenant-days, {conversations:,} conversations, ~{OPEN_SHARE:.0%} open; {n_contacts} contacts)")
    print(f"report_day rows: {small_rows:,} small, {rows:,} large (with {OTHER_ACCOUNTS} other accounts); "
          f"growing took {load_s:.0f} s")
    print(f"{'request (ms)':44} {'p95 small':>9} {'p95 large':>9} {'ratio':>6} {'cpu small':>9} {'cpu large':>9}")
    for label in paths:
        (sp95, _, scpu), (lp95, _, lcpu) = small[label], large[label]
        print(f"{label:44} {sp95:9.1f} {lp95:9.1f} {lp95 / sp95:6.2f} {scpu:9.1f} {lcpu:9.1f}")
    print(f"database file: {(home / 'appliance.db').stat().st_size / 2**20:,.0f} MiB ({home}; --reuse it)")


if __name__ == "__main__":
    main()
