/* Output files the writers replace (see outfile.h). */
#include "formats/outfile.h"

#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the target ------------------------------------------------------------------------------- */

char *out_target(const char *path) {
    char *cur = loom_malloc(strlen(path) + 1);
    if (!cur) return NULL;
    strcpy(cur, path);
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0) {
            if (errno == ENOENT) return cur; /* a new file (possibly named by a dangling link) */
            loom_err("%s: cannot write: %s", path, strerror(errno));
            break;
        }
        if (S_ISREG(st.st_mode)) return cur;
        if (!S_ISLNK(st.st_mode)) {
            loom_err("%s: not a regular file (%s): refusing to replace it", path,
                     S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device"
                     : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory"
                     : S_ISSOCK(st.st_mode) ? "a socket" : "a special file");
            break;
        }
        if (hops == 40) {
            loom_err("%s: too many levels of symbolic links", path);
            break;
        }
        char link[PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) {
            loom_err("%s: cannot read the symbolic link: %s", path, strerror(errno));
            break;
        }
        link[n] = 0;
        /* a relative link is relative to the folder holding the link */
        const char *slash = strrchr(cur, '/');
        size_t dir = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
        char *next = loom_malloc(dir + (size_t)n + 1);
        if (!next) break;
        memcpy(next, cur, dir);
        memcpy(next + dir, link, (size_t)n + 1);
        free(cur);
        cur = next;
    }
    free(cur);
    return NULL;
}

/* ---- temporary files, removed on signals ------------------------------------------------------ */

#define OUT_SLOTS 8
static char held[OUT_SLOTS][PATH_MAX];
static volatile sig_atomic_t held_used[OUT_SLOTS];
static int n_held;
/* SIGXFSZ: a write past RLIMIT_FSIZE (`ulimit -f`) ends the process by default, like a ^C here */
static const int caught[] = {SIGINT, SIGTERM, SIGHUP, SIGXFSZ};
#define N_CAUGHT ((int)(sizeof caught / sizeof caught[0]))
static struct sigaction saved[N_CAUGHT];

static void on_signal(int sig) {
    int e = errno;
    for (int i = 0; i < OUT_SLOTS; i++)
        if (held_used[i]) unlink(held[i]); /* async-signal-safe */
    for (int i = 0; i < N_CAUGHT; i++)
        if (caught[i] == sig) sigaction(sig, &saved[i], NULL);
    errno = e;
    raise(sig); /* the previous disposition: by default the process ends as it would have */
}

int out_hold(const char *path) {
    if (strlen(path) >= PATH_MAX) return -1;
    for (int i = 0; i < OUT_SLOTS; i++) {
        if (held_used[i]) continue;
        strcpy(held[i], path);
        held_used[i] = 1;
        if (n_held++ == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal;
            sigemptyset(&sa.sa_mask);
            for (int k = 0; k < N_CAUGHT; k++) {
                sigaction(caught[k], &sa, &saved[k]);
                /* an ignored signal (nohup's SIGHUP) stays ignored */
                if (saved[k].sa_handler == SIG_IGN) sigaction(caught[k], &saved[k], NULL);
            }
        }
        return i;
    }
    return -1;
}

void out_release(int slot) {
    if (slot < 0 || slot >= OUT_SLOTS || !held_used[slot]) return;
    held_used[slot] = 0;
    if (--n_held == 0)
        for (int k = 0; k < N_CAUGHT; k++) sigaction(caught[k], &saved[k], NULL);
}

/* ---- stale temporary files -------------------------------------------------------------------- */

static bool tmp_suffix(const char *s) {
    if (strncmp(s, ".tmp-", 5) || strlen(s) != 11) return false;
    for (int i = 5; i < 11; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') && !(s[i] >= '0' && s[i] <= '9'))
            return false;
    return true;
}

void out_sweep_stale(const char *target) {
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t dlen = slash ? (size_t)(slash - target) : 0, blen = strlen(base);
    char dir[PATH_MAX];
    if (dlen + 2 > sizeof dir) return;
    if (slash) {
        memcpy(dir, target, dlen ? dlen : 1); /* "/x" -> "/" */
        dir[dlen ? dlen : 1] = 0;
    } else {
        strcpy(dir, ".");
    }
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, base, blen) || !tmp_suffix(e->d_name + blen)) continue;
        char p[PATH_MAX];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p) continue;
        int fd = open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st;
        /* a writer holds its lock until it renames or removes the file: unlocked means abandoned */
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0) unlink(p);
        close(fd);
    }
    closedir(d);
}

int out_tmp_create(const char *target, char **tmp, int *slot) {
    size_t plen = strlen(target);
    char *t = loom_malloc(plen + 12);
    if (!t) return -1;
    memcpy(t, target, plen);
    memcpy(t + plen, ".tmp-XXXXXX", 12);
    sigset_t block, old;
    sigemptyset(&block);
    for (int k = 0; k < N_CAUGHT; k++) sigaddset(&block, caught[k]);
    sigprocmask(SIG_BLOCK, &block, &old);
    int fd = mkostemp(t, O_CLOEXEC);
    *slot = fd >= 0 ? out_hold(t) : -1; /* removed on SIGINT/SIGTERM/SIGHUP/SIGXFSZ from here on */
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (fd < 0) {
        loom_err("%s: cannot create a temporary file next to it: %s", target, strerror(errno));
        free(t);
        return -1;
    }
    flock(fd, LOCK_EX); /* new and ours: cannot block */
    /* mkstemp makes the file 0600; give it the permissions a plain create would */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0) { /* harmless: the file stays 0600 */ }
    *tmp = t;
    return fd;
}
