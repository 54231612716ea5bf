// POSIX file helpers for checkpoints (see posix_file.h).
#include "checkpoint/posix_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ember/runtime/error.h"

namespace ember::checkpoint::posix {

namespace {
std::string sys_error() { return std::strerror(errno); }
}  // namespace

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

File::File(File&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

void File::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) EMBER_THROW("[checkpoint] closing '", path_, "' failed: ", sys_error());
}

File open_file(const std::string& path, int flags, unsigned mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) EMBER_THROW("[checkpoint] cannot open '", path, "': ", sys_error());
  return File(fd, path);
}

void write_all(const File& f, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(f.fd(), p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      EMBER_THROW("[checkpoint] writing '", f.path(), "' failed: ", sys_error());
    }
    if (w == 0) EMBER_THROW("[checkpoint] writing '", f.path(), "' made no progress");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void pread_all(const File& f, void* data, size_t n, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(f.fd(), p + done, std::min<size_t>(n - done, size_t{1} << 30),
                        static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      EMBER_THROW("[checkpoint] reading '", f.path(), "' at byte ", offset + done, " failed: ", sys_error());
    }
    if (r == 0)
      EMBER_THROW("[checkpoint] '", f.path(), "': file changed while reading: it ends before byte ", offset + n);
    done += static_cast<size_t>(r);
  }
}

uint64_t file_size(const File& f) {
  struct stat st;
  if (::fstat(f.fd(), &st) != 0) EMBER_THROW("[checkpoint] cannot stat '", f.path(), "': ", sys_error());
  if (!S_ISREG(st.st_mode)) EMBER_THROW("[checkpoint] '", f.path(), "' is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

void fsync_file(const File& f) {
  if (::fsync(f.fd()) != 0) EMBER_THROW("[checkpoint] fsync of '", f.path(), "' failed: ", sys_error());
}

std::string dir_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void fsync_parent_dir(const std::string& path) {
  File dir = open_file(dir_name(path), O_RDONLY | O_DIRECTORY);
  if (::fsync(dir.fd()) != 0 && errno != EINVAL)  // some file systems cannot fsync directories
    EMBER_THROW("[checkpoint] fsync of directory '", dir.path(), "' failed: ", sys_error());
  dir.close();
}

Mapping::Mapping(const File& f, uint64_t size, bool writable_private) : size_(size) {
  if (size == 0) return;
  int prot = writable_private ? PROT_READ | PROT_WRITE : PROT_READ;
  addr_ = ::mmap(nullptr, static_cast<size_t>(size), prot, MAP_PRIVATE, f.fd(), 0);
  if (addr_ == MAP_FAILED) {
    addr_ = nullptr;
    EMBER_THROW("[checkpoint] cannot map '", f.path(), "' (", size, " bytes): ", sys_error());
  }
}

Mapping::~Mapping() {
  if (addr_) ::munmap(addr_, static_cast<size_t>(size_));
}

void Mapping::will_need(uint64_t offset, uint64_t n) const {
  if (!addr_ || n == 0) return;
  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t start = offset & ~(page - 1);
  // Read-ahead is started for the whole range first, so that uncached pages arrive in large
  // requests rather than one fault at a time; then the pages are mapped in one call (much cheaper
  // than a page fault per 4 KiB). Kernels before 5.14 lack MADV_POPULATE_READ and fault them in as
  // the CRC reads them.
  ::madvise(data() + start, static_cast<size_t>(offset + n - start), MADV_WILLNEED);
#ifdef MADV_POPULATE_READ
  ::madvise(data() + start, static_cast<size_t>(offset + n - start), MADV_POPULATE_READ);
#endif
}

}  // namespace ember::checkpoint::posix
