"""How long does a month's billing run take, and how much memory, for many accounts?

One run, one SQLite instance (the embedded default): seed N accounts, each with an active
contract of two programs (one seat change mid-month) and 30 metered days, then draft every
account's invoice for the month. The baseline is reading the same metered rows once
(a SELECT over every UsageDay row of the month): the ratio says what the billing logic costs
on top of touching the data at all. Memory is the peak traced by tracemalloc during the run.

    python bench/bench_billing.py                   # 10,000 accounts x 30 days
    python bench/bench_billing.py --accounts 1000   # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_instance, running_app

START = dt.date(2031, 1, 1)
END = dt.date(2031, 1, 31)
BATCH = 2000


def seed(accounts: int) -> None:
    from appliance.web.business.catalogue import publish
    from appliance.web.business.models import Contract, ContractLine, SeatHistory
    from appliance.web.db import database_proxy
    from appliance.web.models.metering import UsageDay
    from appliance.web.models.tenancy import Tenant
    from appliance.web.services import tenants

    provider = tenants.create_provider("Provider")
    publish("webchat", dt.date(2030, 1, 1), monthly_fee_minor=2500, setup_fee_minor=10000,
            included_conversations=300, overage_conversation_minor=20)
    publish("email", dt.date(2030, 1, 1), per_seat=False, monthly_fee_minor=9900, included_messages=1000,
            overage_message_minor=2)
    for first in range(0, accounts, BATCH):
        n = min(BATCH, accounts - first)
        with database_proxy.atomic():
            Tenant.insert_many([{"parent": provider.id, "level": 2, "kind": "customer", "name": f"Account {first + i}",
                                 "slug": f"acc-{first + i}", "path": "/"} for i in range(n)]).execute()
            ids = [t.id for t in Tenant.select(Tenant.id).where(Tenant.level == 2).order_by(Tenant.id.desc()).limit(n)]
            Tenant.update(path=Tenant.path.concat(f"{provider.id}/").concat(Tenant.id.cast("text")).concat("/")).where(
                Tenant.id.in_(ids)).execute()
            Contract.insert_many([{"account": t, "status": "active", "starts_on": dt.date(2030, 6, 1),
                                   "ends_on": dt.date(2032, 6, 1)} for t in ids]).execute()
            contract_ids = [c.id for c in Contract.select(Contract.id).where(Contract.account.in_(ids))]
            lines = []
            for c in contract_ids:
                lines.append({"contract": c, "program": "webchat", "seats": 10, "per_seat": True,
                              "monthly_fee_minor": 2500, "setup_fee_minor": 10000, "included_conversations": 300,
                              "overage_conversation_minor": 20})
                lines.append({"contract": c, "program": "email", "seats": 1, "per_seat": False,
                              "monthly_fee_minor": 9900, "included_messages": 1000, "overage_message_minor": 2,
                              "setup_billed": True})
            ContractLine.insert_many(lines).execute()
            webchat = [row.id for row in ContractLine.select(ContractLine.id)
                       .where(ContractLine.contract.in_(contract_ids), ContractLine.program == "webchat")]
            points = [(dt.date(2030, 6, 1), 10), (dt.date(2031, 1, 16), 12)]  # two more seats mid-month
            SeatHistory.insert_many([{"line": line, "effective_on": on, "seats": seats}
                                     for line in webchat for on, seats in points]).execute()
            days = [{"tenant": t, "day": START + dt.timedelta(days=d), "conversations": 12 + (t + d) % 7,
                     "messages_in": 60 + d, "messages_out": 50, "active_operators": 4, "seats": 10,
                     "programs": "email,webchat"} for t in ids for d in range(30)]
            for k in range(0, len(days), 5000):
                UsageDay.insert_many(days[k:k + 5000]).execute()


def baseline() -> float:
    from appliance.web.models.metering import UsageDay

    t0 = time.perf_counter()
    total = 0
    for row in UsageDay.select(UsageDay.tenant, UsageDay.conversations, UsageDay.messages_in).where(
            UsageDay.day >= START, UsageDay.day < END).tuples().iterator():
        total += row[1]
    return time.perf_counter() - t0


def billing_run() -> tuple[float, int, int]:
    from appliance.web.business import invoicing

    tracemalloc.start()
    t0 = time.perf_counter()
    made = invoicing.run(START, END, currency="EUR", discounts={})
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, len(made), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        instance = make_instance(Path(tmp) / "home", f"sqlite:///{Path(tmp) / 'bench.db'}")
        with running_app(instance) as app, app.app_context():
            t0 = time.perf_counter()
            seed(args.accounts)
            print(f"seeded {args.accounts} accounts x 30 metered days in {time.perf_counter() - t0:.1f} s")
            base = baseline()
            elapsed, made, peak = billing_run()
            from appliance.web.business.models import InvoiceLine

            lines = InvoiceLine.select().count()
            print(f"baseline (read the month's {args.accounts * 30} metered rows once): {base:.2f} s")
            print(f"billing run: {made} invoices ({lines} lines) in {elapsed:.1f} s, "
                  f"{elapsed / made * 1000:.2f} ms per account, peak traced memory {peak / 2**20:.1f} MiB")
            print(f"billing ratio: {elapsed / base:.1f}x the baseline scan")


if __name__ == "__main__":
    main()
