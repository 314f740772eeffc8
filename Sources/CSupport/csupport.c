#define _GNU_SOURCE
#include "csupport.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

int cml_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int cml_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
int cml_spawn_setsid_flag(void) { return POSIX_SPAWN_SETSID; }
int cml_spawn_add_chdir(void *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np((posix_spawn_file_actions_t *)actions, path);
}
const void *cml_memrchr(const void *s, int c, size_t n) { return memrchr(s, c, n); }
#include <malloc.h>
void cml_keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

#include <sched.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
int cml_available_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return (int)sysconf(_SC_NPROCESSORS_ONLN);
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}
long long cml_copy_file_range(int in, long long *in_offset, int out, long long *out_offset, size_t length) {
    loff_t in_off = in_offset ? *in_offset : 0, out_off = out_offset ? *out_offset : 0;
    ssize_t n = copy_file_range(in, in_offset ? &in_off : NULL, out, out_offset ? &out_off : NULL, length, 0);
    if (in_offset) *in_offset = in_off;
    if (out_offset) *out_offset = out_off;
    return n;
}
int cml_clone_file(int destination, int source) { return ioctl(destination, FICLONE, source); }
int cml_start_writeback(int fd, long long offset, long long length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
int cml_allocate(int fd, long long length) { return fallocate(fd, 0, 0, length); }
int cml_direct_flag(void) { return O_DIRECT; }

#include <signal.h>
#include <sys/epoll.h>
int cml_readiness_open(void) { return epoll_create1(EPOLL_CLOEXEC); }
int cml_readiness_watch(int queue, int fd) {
    struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data.fd = fd};
    return epoll_ctl(queue, EPOLL_CTL_ADD, fd, &event);
}
int cml_readiness_wait(int queue, int *fds, int max, int timeout_ms) {
    struct epoll_event events[8];
    int n = epoll_wait(queue, events, max < 8 ? max : 8, timeout_ms);
    for (int i = 0; i < n; i++) fds[i] = events[i].data.fd;
    return n;
}
int cml_signal_ignored(int signal) {
    struct sigaction action;
    return sigaction(signal, NULL, &action) == 0 && action.sa_handler == SIG_IGN;
}

int cml_load_library(const char *variable, const char *default_name, const char *package, const char *const *symbols,
                     void **const *destinations, size_t count, char *error, size_t error_size) {
    const char *chosen = getenv(variable);
    const char *name = chosen && *chosen ? chosen : default_name;
    void *library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        if (chosen && *chosen) snprintf(error, error_size, "cannot load %s (named by %s): %s", name, variable, dlerror());
        else snprintf(error, error_size, "cannot load %s: install %s", name, package);
        return 0;
    }
    for (size_t index = 0; index < count; index++) {
        *destinations[index] = dlsym(library, symbols[index]);
        if (!*destinations[index]) {
            snprintf(error, error_size, "cannot load %s: it has no %s", name, symbols[index]);
            return 0;
        }
    }
    return 1;
}
