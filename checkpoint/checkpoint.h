// Ember checkpoints: save and load a tree of Values (a map of named sections holding metadata and
// tensors) in the format of docs/checkpoint-format.md. Saves are atomic (temporary file, fsync,
// rename, fsync of the directory); loads validate the whole index before allocating anything and
// can load some sections only (weights without optimizer state). POSIX only.
//
// A checkpoint's root is a map whose keys are sections. The trainer uses Lightning's names:
//   state_dict        map: parameter/buffer name -> tensor ("encoder.0.weight")
//   optimizer_states  list, one map per optimizer: {"state": {param name: {...tensors...}},
//                     "param_groups": [...]}; state is keyed by parameter name, never position
//   lr_schedulers     list, one map per scheduler
//   loops             map of loop progress counters (ints)
//   callbacks         map: callback key -> state map
//   rng_states        map: generator name -> bytes (Generator::get_state())
//   hyper_parameters  map
//   epoch, global_step  ints
//   extras            anything the user adds
//   module_tree       map {"version": 1, "root": node}: the model's module tree (type, options,
//                     children), written by nn::save and the trainer (train/module_io.h)
//   ember_version     string; the writer adds it when absent
// Any other key is allowed. Tensors may appear anywhere inside a section; each is stored once in
// the tensor index under its dotted path ("0.state.encoder.0.weight.exp_avg" inside
// optimizer_states) and comes back as a CPU tensor (or on ReadOptions::device).
//
// Typical use:
//   checkpoint::save("run/last.ckpt", root);                       // atomic
//   Value all = checkpoint::load("run/last.ckpt");                 // verified
//   Value w = checkpoint::load(path, {.weights_only = true});      // never reads optimizer data
//   checkpoint::Reader r(path);  Tensor t = r.load_tensor("state_dict", "fc.weight");
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/checkpoint/limits.h"
#include "ember/runtime/api.h"
#include "ember/runtime/value.h"

namespace ember::checkpoint {

// Well-known section names (Lightning's checkpoint keys where they exist).
inline constexpr const char* kStateDict = "state_dict";
inline constexpr const char* kOptimizerStates = "optimizer_states";
inline constexpr const char* kLrSchedulers = "lr_schedulers";
inline constexpr const char* kLoops = "loops";
inline constexpr const char* kCallbacks = "callbacks";
inline constexpr const char* kRngStates = "rng_states";
inline constexpr const char* kHyperParameters = "hyper_parameters";
inline constexpr const char* kEpoch = "epoch";
inline constexpr const char* kGlobalStep = "global_step";
inline constexpr const char* kExtras = "extras";
inline constexpr const char* kEmberVersion = "ember_version";
inline constexpr const char* kModuleTree = "module_tree";

// Sections that only resuming training needs; a weights-only save or load leaves them out.
EMBER_API const std::vector<std::string>& training_sections();

enum class Compression : uint8_t { none, zlib };

struct SaveOptions {
  Compression compression = Compression::none;  // per tensor; kept only where it shrinks the tensor
  int zlib_level = 6;
  uint64_t min_compress_bytes = 4096;  // smaller tensors are stored raw
  int align_log2 = 6;                  // payload alignment 2^k, k in [6, 16]
  bool weights_only = false;           // leave out training_sections() and flag the file
  bool durable = true;                 // fsync the file and its directory (off only for scratch files)
  std::optional<std::array<uint8_t, 16>> file_id{};  // fixed id for reproducible files; random otherwise
};

// When tensor checksums are checked.
enum class Verify : uint8_t {
  none,    // trust the data (the index is always validated)
  loaded,  // every tensor that is loaded, before it is returned
  all,     // every tensor and all padding, at open
};

struct ReadOptions {
  Verify verify = Verify::loaded;
  // false: tensors are read with pread into new memory (robust, and as fast when verifying).
  // true: raw tensors alias a private copy-on-write mapping of the file: zero-copy and lazy (with
  // Verify::none nothing is read until touched), at the price noted at Reader.
  bool mmap = false;
  Device device = kCPU;  // where load()/section()/load_tensor() put tensors
  std::vector<std::string> sections{};  // load(): only these sections (empty: all)
  bool weights_only = false;          // load(): every section except training_sections()
  Limits limits{};
};

struct TensorInfo {
  std::string section{};
  std::string name{};  // dotted path inside the section
  DType dtype = DType::f32;
  Shape shape{};
  uint64_t offset = 0;        // byte offset of the stored data in the file
  uint64_t stored_bytes = 0;  // bytes in the file
  uint64_t nbytes = 0;        // bytes once loaded
  bool compressed = false;
  uint32_t crc32 = 0;
};

struct SectionInfo {
  std::string name{};
  size_t tensor_count = 0;
  uint64_t tensor_bytes = 0;  // loaded size of its tensors
  uint64_t stored_bytes = 0;  // their size in the file
  uint64_t metadata_bytes = 0;
};

// Streams a checkpoint to disk. Each add_section() writes that section's tensors at once, one at a
// time (a CUDA or non-contiguous tensor is copied to a contiguous host buffer for the duration of
// its write only), so saving never holds a second copy of the model. Nothing is visible at `path`
// until commit(); a Writer destroyed without commit() deletes its temporary file.
class EMBER_API Writer {
 public:
  // Creates `.<name>.tmp-<pid>-<random>` next to path (mode 0666 minus the umask).
  explicit Writer(std::string path, SaveOptions options = {});
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Writes one section; names are unique. Tensors must be defined; two tensors may not share a
  // dotted path. Strings and keys must be valid UTF-8.
  void add_section(const std::string& name, const Value& value);
  // Writes the index and footer, fsyncs, renames onto path and fsyncs the directory.
  void commit();
  // Deletes the temporary file (commit() can no longer be called).
  void abandon();
  const std::string& path() const;

  struct State;  // defined in writer.cpp

 private:
  std::unique_ptr<State> s_;
};

// An open checkpoint: header, footer and index validated at construction (O(index size)); tensor
// data is read on demand. Const methods may be called from several threads. With
// ReadOptions::mmap, tensors alias the file's pages until written to; another process truncating
// the file in place would make them fault (SIGBUS), which Ember's own writer never does (it
// renames); without it, such a truncation is reported as "file changed while reading".
// The reader checks the format, not the meaning: whether optimizer moments match the model's
// shapes, or a learning rate is finite, is for the code that restores the state (the trainer).
class EMBER_API Reader {
 public:
  explicit Reader(std::string path, ReadOptions options = {});
  ~Reader();
  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;

  const std::string& path() const;
  uint16_t format_major() const;
  uint16_t format_minor() const;
  bool weights_only() const;  // the file was saved with SaveOptions::weights_only
  uint64_t file_size() const;
  uint64_t index_bytes() const;
  int align_log2() const;
  std::array<uint8_t, 16> file_id() const;

  const std::vector<SectionInfo>& sections() const;  // sorted by name
  bool has_section(const std::string& name) const;
  const std::vector<TensorInfo>& tensors() const;  // grouped by section, sorted by name
  const TensorInfo& tensor_info(const std::string& section, const std::string& name) const;

  // A section's value with its tensors loaded (verified as ReadOptions::verify says).
  Value section(const std::string& name) const;
  // A section's value without reading any tensor data: each tensor is replaced by the map
  // {"$tensor": "<dotted name>"} (see tensor_info()). For inspection and diffs.
  Value skeleton(const std::string& name) const;
  // One tensor by section and dotted name.
  Tensor load_tensor(const std::string& section, const std::string& name) const;
  // The root map of the sections selected by ReadOptions::sections / weights_only.
  Value load() const;
  // Checks every tensor checksum, compressed stream and padding byte; throws on the first fault.
  void verify_all() const;
  // Bytes of tensor data read or mapped for loading so far (for tests of lazy loading).
  uint64_t payload_bytes_loaded() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// Writes root (a map of sections) to path atomically.
EMBER_API void save(const std::string& path, const Value& root, const SaveOptions& options = {});
// Loads the sections selected by options from path.
EMBER_API Value load(const std::string& path, const ReadOptions& options = {});
// Deletes temporary files left next to target_path by writers that died (their pid is gone);
// returns how many. Only meaningful on a local file system.
EMBER_API size_t sweep_stale_temp_files(const std::string& target_path);

}  // namespace ember::checkpoint
