"""Read-only inspection: key status and a full decrypt-check of stored values."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.web.crypto import envelope
from appliance.web.crypto.keyring import DATA, KeyRing, KeyUnavailable, get_keyring
from appliance.web.crypto.rotation import _q, _TableSQL, encrypted_tables
from appliance.web.crypto.tables import CryptoMaster, KeyRotationJob, TenantKey
from appliance.web.db import database_proxy


def key_status(keyring: KeyRing | None = None) -> dict:
    kr = keyring or get_keyring()
    kr.verify_master()
    # A long-running process (the System page) follows a rotation made elsewhere here,
    # or fails this check with the reason (the key file missing on this host).
    kr.refresh_master()
    master_row = CryptoMaster.select().order_by(CryptoMaster.id).first()
    tenants: dict[int, list] = {}
    for k in TenantKey.select().order_by(TenantKey.tenant_id, TenantKey.purpose, TenantKey.version):
        tenants.setdefault(k.tenant_id, []).append({
            "key_id": k.key_id, "purpose": k.purpose, "version": k.version, "status": k.status,
            "created_at": k.created_at, "retired_at": k.retired_at,
        })
    jobs = [{"tenant_id": j.tenant_id, "new_key_id": j.new_key_id, "rows_done": j.rows_done,
             "failures": j.failures, "started_at": j.started_at}
            for j in KeyRotationJob.select().where(KeyRotationJob.state == "running")]
    return {
        "master_key_id": kr.master.key_id,
        "master_key_source": kr.master.describe(),
        "database_master_key_id": master_row.master_key_id if master_row else None,
        "rotated_at": master_row.rotated_at if master_row else None,
        "tenants": tenants,
        "running_rotations": jobs,
    }


@dataclass
class VerifyReport:
    values_checked: int = 0
    rows_checked: int = 0
    failures: list = field(default_factory=list)  # dicts: table, pk, uid, column, reason

    @property
    def ok(self) -> bool:
        return not self.failures


def count_rows(models=None) -> int:
    return sum(database_proxy.execute_sql(f"SELECT COUNT(*) FROM {_q(m._meta.table_name)}").fetchone()[0]
               for m in encrypted_tables(models))


def verify_all(models=None, keyring: KeyRing | None = None, batch_size: int = 5000,
               progress_cb=None) -> VerifyReport:
    """Decrypt every encrypted value; record each failure and carry on."""
    kr = keyring or get_keyring()
    kr.verify_master()
    report = VerifyReport()
    for model in encrypted_tables(models):
        t = _TableSQL(model)
        tcol = t.spec.tenant_field.column_name
        cols = ", ".join(_q(c) for c in t.columns)
        sql = (f"SELECT {_q(t.pk)}, {_q(t.spec.uid_field.column_name)}, {_q(tcol)}, {cols} "
               f"FROM {_q(t.table)} WHERE {_q(t.pk)} > {t.p} ORDER BY {_q(t.pk)} LIMIT {int(batch_size)}")
        last = 0
        while True:
            rows = database_proxy.execute_sql(sql, [last]).fetchall()
            if not rows:
                break
            for row in rows:
                pk, raw_uid, tenant_id = row[0], row[1], row[2]
                report.rows_checked += 1
                for column, blob in zip(t.columns, row[3:], strict=True):
                    if blob is None:
                        continue
                    report.values_checked += 1
                    try:
                        uid = envelope.uid_bytes(raw_uid)
                        blob = bytes(blob)
                        key = kr.get(envelope.key_id_of(blob))
                        if key.tenant_id != tenant_id or key.purpose != DATA:
                            raise envelope.DecryptionFailed("value names another tenant's key", key.key_id)
                        envelope.open_sealed(key.aead, t.prefix(tenant_id, column), uid, blob)
                    except KeyUnavailable as exc:
                        report.failures.append({"table": t.table, "pk": pk, "uid": str(raw_uid), "column": column,
                                                    "reason": str(exc)})
                    except (envelope.DecryptionFailed, ValueError) as exc:
                        report.failures.append({"table": t.table, "pk": pk, "uid": str(raw_uid), "column": column,
                                                    "reason": getattr(exc, "reason", str(exc))})
            last = rows[-1][0]
            if progress_cb is not None:
                progress_cb(len(rows))
    return report
