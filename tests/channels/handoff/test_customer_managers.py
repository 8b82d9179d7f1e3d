"""客户经理制 in the reference backends: enterprise accounts carry their customer manager."""
from __future__ import annotations

import sqlite3

from backends import demo_accounts as demo
from backends.db import Database
from backends.seed import CUSTOMER_MANAGERS, seed_if_empty


async def test_enterprise_accounts_have_their_manager_and_others_none(backends, seeded_db):
    billing = backends.clients.billing
    enterprise = await billing.get_account(demo.ENTERPRISE)
    assert enterprise.customer_manager is not None
    assert (enterprise.customer_manager.id, enterprise.customer_manager.name) == CUSTOMER_MANAGERS[0]
    assert (await billing.get_account(demo.RESIDENTIAL_TOU)).customer_manager is None
    assert (await billing.get_account(demo.COMMERCIAL)).customer_manager is None
    with sqlite3.connect(seeded_db) as conn:
        without = conn.execute(
            "SELECT account_number FROM accounts WHERE customer_type = 'enterprise' AND status = 'active'"
            " AND account_number NOT IN (SELECT account_number FROM customer_managers)"
            " ORDER BY account_number LIMIT 1").fetchone()[0]
        managed = conn.execute("SELECT COUNT(*) FROM customer_managers").fetchone()[0]
    assert (await billing.get_account(without)).customer_manager is None
    assert managed > 1


def test_a_database_seeded_before_the_table_gets_the_managers(tmp_path):
    db = Database(tmp_path / "old.sqlite3")
    assert seed_if_empty(db)
    with db.transaction() as conn:
        conn.execute("DELETE FROM customer_managers")
    assert not seed_if_empty(db)  # the next start fills it, the same way
    assert db.one("SELECT manager_id FROM customer_managers WHERE account_number = ?",
                  (demo.ENTERPRISE,))["manager_id"] == "KH01"
    db.close()
