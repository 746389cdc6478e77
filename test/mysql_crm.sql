-- test/mysql_crm.sql: the article's CRM database on MariaDB (customers and support tickets),
-- and the account the mysql-cdc source uses.  Run as root; drops what it creates first.
SET NAMES utf8mb4;
DROP DATABASE IF EXISTS crm_db;
CREATE DATABASE crm_db CHARACTER SET utf8mb4;

CREATE TABLE crm_db.customers (
    customer_id         varchar(36) NOT NULL PRIMARY KEY,
    email               varchar(255),
    first_name          varchar(100),
    last_name           varchar(100),
    phone               varchar(40),
    acquisition_channel varchar(40),
    signup_date         datetime,
    loyalty_tier        enum('bronze', 'silver', 'gold', 'platinum'),
    last_updated        timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    notes               text
) ENGINE = InnoDB;

CREATE TABLE crm_db.support_tickets (
    ticket_id   bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_id varchar(36) NOT NULL,
    status      enum('open', 'resolved', 'escalated') NOT NULL DEFAULT 'open',
    category    varchar(60),
    created_at  datetime(3) NOT NULL,
    resolved_at datetime NULL,
    KEY (customer_id)
) ENGINE = InnoDB;

CREATE USER IF NOT EXISTS 'c360'@'127.0.0.1' IDENTIFIED BY 'c360pw';
GRANT SELECT ON crm_db.* TO 'c360'@'127.0.0.1';
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'c360'@'127.0.0.1';
