#define _GNU_SOURCE
#include "csupport.h"
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
