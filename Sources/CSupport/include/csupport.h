// GNU and Linux extensions that Swift's Glibc module leaves out (it is built without _GNU_SOURCE).
#pragma once
#include <stddef.h>

/// pipe2(fds, O_CLOEXEC); 0 or -1 with errno.
int cml_pipe_cloexec(int fds[2]);
/// fcntl(fd, F_SETPIPE_SZ, size); the new size or -1.
int cml_set_pipe_size(int fd, int size);
/// posix_spawn_file_actions_addchdir_np(3): the child starts in `path`.
int cml_spawn_add_chdir(void *actions, const char *path);
/// The POSIX_SPAWN_SETSID flag.
int cml_spawn_setsid_flag(void);
/// memrchr(3).
const void *cml_memrchr(const void *s, int c, size_t n);
/// Keeps freed memory for reuse instead of returning it to the kernel: output chunks are allocated and
/// freed at pipe speed, and fresh pages cost a fault each.
void cml_keep_freed_memory(void);
/// The CPUs this process may run on (sched_getaffinity, so `taskset` counts), at least 1.
int cml_available_cpus(void);
/// copy_file_range(2) (flags 0); a null offset means the descriptor's own position.
long long cml_copy_file_range(int in, long long *in_offset, int out, long long *out_offset, size_t length);
/// ioctl(destination, FICLONE, source): shares source's blocks (btrfs, XFS); -1 with errno where unsupported.
int cml_clone_file(int destination, int source);
/// fallocate(fd, 0, 0, length): gives an empty file its blocks and size at once; -1 with errno
/// (EOPNOTSUPP where the filesystem cannot).
int cml_allocate(int fd, long long length);
/// sync_file_range(SYNC_FILE_RANGE_WRITE): starts writing a range back to disk without waiting, so that a
/// later fsync has less left to wait for.
int cml_start_writeback(int fd, long long offset, long long length);
/// O_DIRECT, which Swift's Glibc module does not export: reads and writes that bypass the page cache.
int cml_direct_flag(void);
#include <stdint.h>
/// CRC-32C of `length` bytes, continuing from `crc` (0 to start; a previous result to go on): the CPU's
/// crc32 instruction where there is one.
uint32_t cml_crc32c(uint32_t crc, const void *data, size_t length);
/// The CRC-32C of A followed by B, from the CRC-32C of each and the length of B.
uint32_t cml_crc32c_combine(uint32_t first, uint32_t second, uint64_t second_length);
/// The same one table lookup per byte, whatever the CPU (what cml_crc32c falls back to).
uint32_t cml_crc32c_software(uint32_t crc, const void *data, size_t length);
/// An epoll instance (close-on-exec) that reports descriptors in the order they became readable; -1
/// with errno.
int cml_readiness_open(void);
/// Watches `fd` for input, edge-triggered: it is reported again only after new bytes arrive, so a reader
/// must read it until EAGAIN before waiting for it again.
int cml_readiness_watch(int queue, int fd);
/// Waits up to `timeout_ms` (-1: no limit) and stores up to `max` descriptors that became readable (or
/// hung up) in `fds`, in the order they did; returns how many, or -1 with errno.
int cml_readiness_wait(int queue, int *fds, int max, int timeout_ms);
/// Whether `signal` is ignored (SIG_IGN), as a launcher may have left it: `cmd &` in a script ignores
/// SIGINT and SIGQUIT, `nohup` SIGHUP.
int cml_signal_ignored(int signal);

/// Loads a shared library at run time (RTLD_NOW | RTLD_LOCAL): the one `$variable` names, else
/// `default_name`, and resolves each of `count` `symbols` into `*destinations[i]`. 1 when every one is
/// resolved; else 0, with why as one line in `error` (naming `variable` when it chose the library, else the
/// Debian `package` to install).
int cml_load_library(const char *variable, const char *default_name, const char *package, const char *const *symbols,
                     void **const *destinations, size_t count, char *error, size_t error_size);
