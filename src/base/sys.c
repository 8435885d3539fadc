#include "base/sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double g4q_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t klen = strlen(key);
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtoull(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

uint64_t g4q_peak_rss_bytes(void)
{
    return proc_status_kb("VmHWM");
}

uint64_t g4q_rss_bytes(void)
{
    return proc_status_kb("VmRSS");
}

g4q_status g4q_status_from_write_errno(int err)
{
    return (err == ENOSPC || err == EDQUOT || err == EFBIG) ? G4Q_ERR_NOSPACE : G4Q_ERR_IO;
}

g4q_status g4q_read_file(g4q_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return g4q_fail(ctx, errno == ENOENT ? G4Q_ERR_NOT_FOUND : G4Q_ERR_IO, "%s: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: %lld bytes, more than the %zu allowed", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return g4q_fail(ctx, G4Q_ERR_IO, "%s: read failed: %s", path,
                            r == 0 ? "unexpected end of file" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return G4Q_OK;
}

g4q_status g4q_write_file(g4q_ctx *ctx, const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return g4q_fail(ctx, g4q_status_from_write_errno(e), "%s: write failed: %s", path,
                            strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0)
        return g4q_fail(ctx, g4q_status_from_write_errno(errno), "%s: close failed: %s", path,
                        strerror(errno));
    return G4Q_OK;
}

g4q_status g4q_copy_file(g4q_ctx *ctx, const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return g4q_fail(ctx, errno == ENOENT ? G4Q_ERR_NOT_FOUND : G4Q_ERR_IO, "%s: %s", src,
                        strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot create: %s", dst, strerror(e));
    }
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF);
    g4q_status st = buf ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: no memory to copy", src);
    while (st == G4Q_OK) {
        ssize_t r = read(in, buf, BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = g4q_fail(ctx, G4Q_ERR_IO, "%s: read failed: %s", src, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        for (ssize_t off = 0; off < r && st == G4Q_OK;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                st = g4q_fail(ctx, g4q_status_from_write_errno(errno), "%s: write failed: %s", dst,
                              strerror(errno));
            else
                off += w;
        }
    }
    free(buf);
    close(in);
    if (close(out) != 0 && st == G4Q_OK)
        st = g4q_fail(ctx, g4q_status_from_write_errno(errno), "%s: close failed: %s", dst,
                      strerror(errno));
    return st;
}

int g4q_path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int g4q_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

g4q_status g4q_mkdir_p(g4q_ctx *ctx, const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: bad directory path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot create directory: %s", buf,
                            strerror(errno));
        buf[i] = c;
    }
    if (!g4q_is_dir(path))
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: exists and is not a directory", path);
    return G4Q_OK;
}

g4q_status g4q_remove_tree(g4q_ctx *ctx, const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? G4Q_OK
                               : g4q_fail(ctx, G4Q_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot open directory: %s", path,
                            strerror(errno));
        struct dirent *e;
        g4q_status s = G4Q_OK;
        while (s == G4Q_OK && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[4096];
            s = g4q_path_join(ctx, child, sizeof child, path, e->d_name);
            if (s == G4Q_OK)
                s = g4q_remove_tree(ctx, child);
        }
        closedir(d);
        if (s != G4Q_OK)
            return s;
        if (rmdir(path) != 0)
            return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return G4Q_OK;
    }
    if (unlink(path) != 0)
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return G4Q_OK;
}

g4q_status g4q_path_join(g4q_ctx *ctx, char *buf, size_t n, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] == '/';
    int w = snprintf(buf, n, "%s%s%s", dir, slash ? "" : "/", name);
    if (w < 0 || (size_t)w >= n)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s/%s: path too long", dir, name);
    return G4Q_OK;
}
