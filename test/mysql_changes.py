#!/usr/bin/env python3
"""test/mysql_changes.py: SQL for crm_db on MariaDB, to stdout, for t_mysql_source.sh and
bench/mysql.sh.

  mysql_changes.py load CUSTOMERS TICKETS
      the initial data: customers c1..cN and tickets 1..M (through the SEQUENCE engine)
  mysql_changes.py changes N SEED CUSTOMERS TICKETS [--prefix P]
      N random changes in the article's mix: ticket status flips (open/resolved/escalated),
      loyalty tier changes, deletes, new customers and tickets, tickets moving between
      customers; about a third of them grouped 2-5 to a transaction.  New customers are
      named P<seed>_<k> so that runs with different seeds do not collide.
"""
import random
import sys

TIERS = ["bronze", "silver", "gold", "platinum"]
STATUSES = ["open", "resolved", "escalated"]
CATEGORIES = ["billing", "shipping", "returns", "account", "product"]
CHANNELS = ["web", "mobile", "store", "referral", "ads"]


def load(customers, tickets):
    print("SET NAMES utf8mb4;")
    print("USE crm_db;")  # the seq_1_to_N tables of the SEQUENCE engine need a database
    print(f"""INSERT INTO crm_db.customers (customer_id, email, first_name, last_name, phone,
    acquisition_channel, signup_date, loyalty_tier)
SELECT CONCAT('c', seq), CONCAT('user', seq, '@example.com'), CONCAT('First', seq % 997),
       CONCAT('Last', seq % 1009), IF(seq % 3 = 0, NULL, CONCAT('+1555', LPAD(seq, 7, '0'))),
       ELT(1 + seq % 5, {", ".join(repr(c) for c in CHANNELS)}),
       TIMESTAMP('2020-01-01') + INTERVAL (seq * 7919) % 100000000 SECOND,
       ELT(1 + seq % 4, {", ".join(repr(t) for t in TIERS)})
FROM seq_1_to_{customers};""")
    print(f"""INSERT INTO crm_db.support_tickets (ticket_id, customer_id, status, category,
    created_at, resolved_at)
SELECT seq, CONCAT('c', 1 + (seq * 7) % {customers}), ELT(1 + seq % 3, 'open', 'resolved', 'escalated'),
       ELT(1 + seq % 5, {", ".join(repr(c) for c in CATEGORIES)}),
       TIMESTAMP('2023-01-01') + INTERVAL (seq * 104729) % 60000000 SECOND + INTERVAL seq % 1000 * 1000 MICROSECOND,
       IF(seq % 3 = 1, TIMESTAMP('2024-06-01') + INTERVAL seq SECOND, NULL)
FROM seq_1_to_{tickets};""")


def change(rng, state):
    customers, tickets, prefix = state["customers"], state["tickets"], state["prefix"]
    r = rng.random()
    cust = f"c{rng.randint(1, customers)}"
    ticket = rng.randint(1, tickets)
    if r < 0.40:
        status = rng.choice(STATUSES)
        resolved = "UTC_TIMESTAMP()" if status == "resolved" else "NULL"
        return (f"UPDATE crm_db.support_tickets SET status = '{status}', resolved_at = {resolved} "
                f"WHERE ticket_id = {ticket};")
    if r < 0.65:
        return (f"UPDATE crm_db.customers SET loyalty_tier = '{rng.choice(TIERS)}' "
                f"WHERE customer_id = '{cust}';")
    if r < 0.75:
        state["new_tickets"] += 1
        return (f"INSERT INTO crm_db.support_tickets (customer_id, status, category, created_at) "
                f"VALUES ('{cust}', '{rng.choice(STATUSES)}', '{rng.choice(CATEGORIES)}', "
                f"UTC_TIMESTAMP(3) - INTERVAL {rng.randint(0, 5000000)} SECOND);")
    if r < 0.83:
        return f"DELETE FROM crm_db.support_tickets WHERE ticket_id = {ticket};"
    if r < 0.88:
        return f"DELETE FROM crm_db.customers WHERE customer_id = '{cust}';"
    if r < 0.93:
        state["new_customers"] += 1
        k = state["new_customers"]
        return (f"INSERT INTO crm_db.customers (customer_id, email, first_name, last_name, "
                f"acquisition_channel, signup_date, loyalty_tier) VALUES ('{prefix}_{k}', "
                f"'{prefix}_{k}@example.com', 'New', 'Customer{k}', '{rng.choice(CHANNELS)}', "
                f"UTC_TIMESTAMP() - INTERVAL {rng.randint(0, 1000)} DAY, '{rng.choice(TIERS)}');")
    if r < 0.97:
        return (f"UPDATE crm_db.support_tickets SET customer_id = '{cust}' "
                f"WHERE ticket_id = {ticket};")
    return (f"UPDATE crm_db.customers SET email = 'moved{rng.randint(1, 10**9)}@example.com' "
            f"WHERE customer_id = '{cust}';")


def changes(n, seed, customers, tickets, prefix):
    rng = random.Random(seed)
    state = {"customers": customers, "tickets": tickets, "prefix": f"{prefix}{seed}",
             "new_tickets": 0, "new_customers": 0}
    print("SET NAMES utf8mb4;")
    done = 0
    while done < n:
        if rng.random() < 0.15:
            k = min(rng.randint(2, 5), n - done)
            print("BEGIN;")
            for _ in range(k):
                print(change(rng, state))
            print("COMMIT;")
            done += k
        else:
            print(change(rng, state))
            done += 1


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "load":
        load(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) >= 6 and sys.argv[1] == "changes":
        prefix = sys.argv[sys.argv.index("--prefix") + 1] if "--prefix" in sys.argv else "n"
        changes(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), prefix)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
