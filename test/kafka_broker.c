/*
 * test/kafka_broker.c: a throwaway Kafka broker for tests, `make demo` and `make bench`.
 *
 * No Kafka broker is packaged in Debian, so this runs librdkafka's mock cluster
 * (rdkafka_mock.h): a real Kafka-protocol server on loopback that other processes
 * (the Kafka source worker, kcat) talk to like any broker.  Everything is kept in
 * memory and is gone when the program exits; the port is random on each start.
 *
 *   kafka_broker [--brokers N] [--topic NAME:PARTITIONS]... [--bootstrap-file PATH]
 *                [--pid-file PATH]
 *
 * Once the brokers listen and the topics exist it prints the bootstrap address
 * ("127.0.0.1:PORT[,127.0.0.1:PORT...]") as one line on stdout and writes it to
 * the bootstrap file (write a temporary file, then rename, so a reader never sees
 * a partial address).  Then it waits for signals:
 *   SIGUSR1          take every broker down (connections dropped, new ones refused)
 *   SIGUSR2          bring every broker back up (same ports, data kept)
 *   SIGTERM, SIGINT  destroy the cluster and exit 0
 *
 * Build: gcc -O2 -Wall -o test/kafka_broker test/kafka_broker.c -lrdkafka
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 64

struct topic_spec {
    const char *name;
    int partitions;
};

/* Set by the signal handlers, read and cleared by the main loop: a handler may
 * only touch sig_atomic_t flags, never call librdkafka or stdio. */
static volatile sig_atomic_t got_stop, got_down, got_up;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        got_down = 1;
    else if (sig == SIGUSR2)
        got_up = 1;
    else
        got_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kafka_broker [--brokers N] [--topic NAME:PARTITIONS]...\n"
            "                    [--bootstrap-file PATH] [--pid-file PATH]\n"
            "  SIGUSR1 takes the brokers down, SIGUSR2 brings them up, SIGTERM exits.\n");
}

/* Log with a prefix, so these lines stand out from librdkafka's own log lines. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;

    fputs("kafka_broker: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Write one line to path atomically: a reader sees either no file or the whole
 * line, never a half-written one, because rename() within a directory is atomic. */
static int write_file_atomic(const char *path, const char *line)
{
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    FILE *f;
    int ok;

    if (!tmp)
        return -1;
    snprintf(tmp, len, "%s.tmp.%ld", path, (long) getpid());
    f = fopen(tmp, "w");
    if (!f) {
        say("cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    ok = fprintf(f, "%s\n", line) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        say("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* Take every broker down or up.  Broker ids run from 1 to n.  Each is set by its
 * id rather than with -1 ("all"): the API is experimental and unversioned, and
 * naming the brokers one by one does not depend on how a version reads -1. */
static void set_brokers(rd_kafka_mock_cluster_t *mc, int n, int up)
{
    for (int id = 1; id <= n; id++) {
        rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(mc, id)
                                     : rd_kafka_mock_broker_set_down(mc, id);
        if (err)
            say("broker %d: set %s failed: %s", id, up ? "up" : "down",
                rd_kafka_err2str(err));
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"bootstrap-file", required_argument, NULL, 'f'},
        {"pid-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct topic_spec topics[MAX_TOPICS];
    int ntopics = 0, nbrokers = 1, opt, down = 0, failed = 0;
    const char *bootstrap_file = NULL, *pid_file = NULL, *bootstraps;
    char errstr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    static const int signals[] = {SIGUSR1, SIGUSR2, SIGTERM, SIGINT};
    struct sigaction sa;
    sigset_t handled, old;

    while ((opt = getopt_long(argc, argv, "b:t:f:p:h", longopts, NULL)) != -1) {
        char *colon, *end;

        switch (opt) {
        case 'b':
            nbrokers = (int) strtol(optarg, &end, 10);
            if (*end || nbrokers < 1 || nbrokers > 100) {
                say("--brokers wants a number from 1 to 100, got '%s'", optarg);
                return 2;
            }
            break;
        case 't':
            if (ntopics == MAX_TOPICS) {
                say("at most %d topics", MAX_TOPICS);
                return 2;
            }
            /* Kafka topic names cannot contain ':', so the last one splits. */
            colon = strrchr(optarg, ':');
            topics[ntopics].name = optarg;
            topics[ntopics].partitions = 1;
            if (colon) {
                *colon = '\0';
                topics[ntopics].partitions = (int) strtol(colon + 1, &end, 10);
                if (*end || colon[1] == '\0' || topics[ntopics].partitions < 1) {
                    say("--topic wants NAME:PARTITIONS with PARTITIONS >= 1, got '%s:%s'",
                        optarg, colon + 1);
                    return 2;
                }
            }
            if (topics[ntopics].name[0] == '\0') {
                say("--topic wants a name");
                return 2;
            }
            ntopics++;
            break;
        case 'f':
            bootstrap_file = optarg;
            break;
        case 'p':
            pid_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    /* A stale bootstrap file from an earlier run names a dead port; remove it
     * first so nobody mistakes it for this run's address. */
    if (bootstrap_file)
        unlink(bootstrap_file);

    /*
     * Block our signals while librdkafka starts its threads (they inherit the
     * mask), then unblock them in this thread only: that way every signal is
     * delivered to the main thread, which is the one that polls the flags.
     */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&handled);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        sigaction(signals[i], &sa, NULL);
        sigaddset(&handled, signals[i]);
    }
    /* A client that hangs up mid-response must not kill the broker. */
    signal(SIGPIPE, SIG_IGN);
    pthread_sigmask(SIG_BLOCK, &handled, &old);

    /*
     * The mock cluster lives inside an ordinary client handle (it needs one for
     * its book-keeping); a producer is the lightest kind.  The handle itself never
     * connects anywhere, so give it no bootstrap servers and keep its own
     * "no bootstrap.servers" warning out of the log.
     */
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        say("%s", errstr);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        say("cannot create the client handle: %s", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        say("cannot create the mock cluster");
        rd_kafka_destroy(rk);
        return 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /*
     * Create the topics up front with the partition counts asked for: the mock
     * would otherwise auto-create an unknown topic on first use with its default
     * partition count.  There is no real replication in the mock (a partition has
     * one log whatever the factor), so a replication factor of 1 says the truth.
     */
    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mc, topics[i].name, topics[i].partitions, 1);
        if (err) {
            say("cannot create topic %s: %s", topics[i].name, rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
    }

    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);

    /* The pid file goes first: whoever sees the bootstrap file may signal us. */
    if (pid_file) {
        char pid[32];

        snprintf(pid, sizeof pid, "%ld", (long) getpid());
        if (write_file_atomic(pid_file, pid) != 0)
            failed = 1;
    }
    if (!failed && bootstrap_file && write_file_atomic(bootstrap_file, bootstraps) != 0)
        failed = 1;
    if (!failed) {
        printf("%s\n", bootstraps);
        fflush(stdout);
        say("%d broker(s) up at %s, %d topic(s)", nbrokers, bootstraps, ntopics);
    }

    /*
     * Main loop: sleep, then act on whatever flags the handlers set.  A signal
     * cuts the sleep short (EINTR), so the reaction is immediate; the timeout only
     * bounds how long a signal that arrives between the checks and the sleep waits.
     */
    while (!got_stop && !failed) {
        struct timespec nap = {0, 100 * 1000 * 1000};

        if (got_down) {
            got_down = 0;
            if (down)
                say("SIGUSR1: brokers already down");
            else {
                set_brokers(mc, nbrokers, 0);
                down = 1;
                say("SIGUSR1: brokers down");
            }
        }
        if (got_up) {
            got_up = 0;
            if (!down)
                say("SIGUSR2: brokers already up");
            else {
                set_brokers(mc, nbrokers, 1);
                down = 0;
                say("SIGUSR2: brokers up");
            }
        }
        if (!got_stop && !got_down && !got_up)
            nanosleep(&nap, NULL);
    }

    say("stopping");
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    /* Leave no address of a dead broker behind. */
    if (bootstrap_file)
        unlink(bootstrap_file);
    if (pid_file)
        unlink(pid_file);
    return failed ? 1 : 0;
}
