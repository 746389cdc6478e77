# test/crm_compare.sh: the CRM tables on MariaDB and their mirrors in customer360, each as
# the same sorted text, so that a mysql-cdc source's mirrors can be compared with their
# source row for row (cmp).  Source it; it needs my() (the mariadb client, -N -B) and q()
# (psql on the database under test).
#   crm_dump_remote DB CUSTOMERS_OUT TICKETS_OUT      crm tables of MariaDB database DB
#   crm_dump_mirror CUSTOMERS_OUT TICKETS_OUT [WHERE]  c360.customers (WHERE: a filter on
#                                                      them), c360.support_tickets

crm_dump_remote() {
    my -e "SET time_zone = '+00:00';
        SELECT customer_id, IFNULL(email, 'NULL'), IFNULL(first_name, 'NULL'), IFNULL(last_name, 'NULL'),
               IFNULL(phone, 'NULL'), IFNULL(acquisition_channel, 'NULL'),
               IFNULL(DATE_FORMAT(signup_date, '%Y-%m-%d %H:%i:%s'), 'NULL'), IFNULL(loyalty_tier, 'NULL'),
               DATE_FORMAT(last_updated, '%Y-%m-%d %H:%i:%s.%f')
        FROM $1.customers" | LC_ALL=C sort >"$2"
    my -e "SELECT ticket_id, customer_id, status, IFNULL(category, 'NULL'),
               DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'),
               IFNULL(DATE_FORMAT(resolved_at, '%Y-%m-%d %H:%i:%s'), 'NULL')
        FROM $1.support_tickets" | LC_ALL=C sort >"$3"
}

crm_dump_mirror() {
    q -F $'\t' -c "SELECT customer_id, coalesce(email, 'NULL'), coalesce(first_name, 'NULL'),
               coalesce(last_name, 'NULL'), coalesce(phone, 'NULL'), coalesce(acquisition_channel, 'NULL'),
               coalesce(to_char(signup_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL'),
               coalesce(loyalty_tier, 'NULL'), to_char(last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
        FROM c360.customers WHERE ${3:-true}" | LC_ALL=C sort >"$1"
    q -F $'\t' -c "SELECT ticket_id, customer_id, status, coalesce(category, 'NULL'),
               to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
               coalesce(to_char(resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL')
        FROM c360.support_tickets" | LC_ALL=C sort >"$2"
}
