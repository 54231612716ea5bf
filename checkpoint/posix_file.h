// Thin POSIX file helpers for the checkpoint reader and writer: an owning descriptor, full
// reads and writes that retry on EINTR and short transfers, and a read-only or private mapping.
// Every failure throws ember::Error naming the file and the system error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ember::checkpoint::posix {

// An owned file descriptor, closed (unchecked) on destruction; close() checks.
class File {
 public:
  File() = default;
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~File();
  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool is_open() const { return fd_ >= 0; }
  void close();  // throws when close(2) reports an error (e.g. a delayed write error)

 private:
  int fd_ = -1;
  std::string path_;
};

// open(2) with the given flags and mode; throws "[checkpoint] cannot open 'p': <strerror>".
File open_file(const std::string& path, int flags, unsigned mode = 0);
// Writes all n bytes at the current position.
void write_all(const File& f, const void* data, size_t n);
// Reads exactly n bytes at offset; throws "file changed while reading" when the file is shorter.
void pread_all(const File& f, void* data, size_t n, uint64_t offset);
uint64_t file_size(const File& f);  // also checks that it is a regular file
void fsync_file(const File& f);
// fsyncs the directory that holds path (so a rename in it is durable).
void fsync_parent_dir(const std::string& path);
// "dir" part of a path ("." when there is none) and the last component.
std::string dir_name(const std::string& path);
std::string base_name(const std::string& path);

// A mapping of a whole file, unmapped on destruction. Private mappings are writable
// copy-on-write, so tensors aliasing them can be modified without touching the file.
class Mapping {
 public:
  Mapping(const File& f, uint64_t size, bool writable_private);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  uint64_t size() const { return size_; }
  // Hints that [offset, offset + n) will be read soon and sequentially.
  void will_need(uint64_t offset, uint64_t n) const;

 private:
  void* addr_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace ember::checkpoint::posix
