// Asynchronous checkpoint saving: save() copies the state's tensors into host buffers that the
// saver keeps from one save to the next, queues the write of that copy, and returns; a background
// thread then writes the file exactly as checkpoint::save() would (same bytes, same atomic
// protocol: temporary file, fsync, rename, directory fsync). The caller is blocked only for the
// copy, and for the previous write when it has not finished yet: at most one write is in flight, so
// memory stays bounded at one copy of the state.
//
// The copy can also be left to the worker for tensors the caller names (`stage_later`): save()
// then returns without copying them, the worker copies them first and writes afterwards, and the
// caller must call wait_for_snapshot() before it modifies any of them. The trainer names the
// parameters and optimizer moments, which only the optimizer step changes, so that their copy
// runs while the next batch's forward and backward pass do (PyTorch's distributed checkpoint
// stages asynchronously the same way, with a wait before the next optimizer step).
//
// A failed write is never lost: it is thrown by the next save() or wait() (once), and the file it
// was to replace is untouched. The destructor waits for the write in flight and prints a failure no
// one collected to stderr.
//
//   checkpoint::AsyncSaver saver;
//   saver.save("run/step-1000.ckpt", root);   // returns after the copy; root may change now
//   ...                                        // training goes on while the file is written
//   saver.wait();                              // the file is committed (or its error is thrown)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/runtime/api.h"
#include "ember/runtime/value.h"

namespace ember::checkpoint {

// Timings of the saver, as the calling thread saw them (seconds).
struct AsyncSaveStats {
  uint64_t saves = 0;               // save() calls that queued a write
  uint64_t completed = 0;           // writes finished (committed or failed)
  double last_wait_s = 0;           // the last save()'s wait for the previous write
  double last_snapshot_s = 0;       // the last save()'s own copy of the state
  double last_snapshot_wait_s = 0;  // wait_for_snapshot()'s wait for the worker's copy since then
  double last_blocked_s = 0;        // the last save: wait + copy + snapshot wait
  double last_write_s = 0;          // the background time of the last finished write (copy included)
  double total_blocked_s = 0;       // all saves: wait + copy + snapshot wait
  uint64_t snapshot_bytes = 0;      // bytes held by the host buffers of the copy
  uint64_t staged_later_bytes = 0;  // of those, copied by the worker in the last save
};

class EMBER_API AsyncSaver {
 public:
  AsyncSaver();
  ~AsyncSaver();
  AsyncSaver(const AsyncSaver&) = delete;
  AsyncSaver& operator=(const AsyncSaver&) = delete;

  // Waits for the write in flight (throwing its failure, in which case nothing new is queued),
  // copies root (a map of sections, as for save()) with every tensor moved into this saver's host
  // buffers, and queues the write of the copy to path. Contiguous CUDA tensors go to page-locked
  // buffers by copies queued on their device's stream (the device is not stopped: the copies see
  // the state as of this call, kernels queued later do not reach them).
  // Returns once the copy is complete: root's tensors may be modified right after.
  // Tensors whose storage (data pointer) is in stage_later are copied by the worker instead.
  void save(const std::string& path, const Value& root, const SaveOptions& options = {},
            const std::vector<const void*>& stage_later = {});
  // Deletes path once the write in flight is committed, on the worker (deleting a large file that
  // was just written costs a fraction of a second: dropping its cached pages); not at all if that
  // write fails. With no write in flight, deletes it now. Failures to delete are not errors: they
  // are collected for take_warnings().
  void remove_after_commit(const std::string& path);
  // Messages about files remove_after_commit() could not delete, since the last call.
  std::vector<std::string> take_warnings();
  // Waits until the worker has copied the tensors save() left to it (at once when there are none):
  // after it returns, they may be modified. Never throws for a failed write (wait() does).
  void wait_for_snapshot();
  // Waits for the write in flight; throws its failure once. Returns at once when idle.
  void wait();
  // True while a write is queued or running.
  bool busy() const;
  // The path of the write in flight, or of the last one ("" before the first save).
  std::string current_path() const;
  AsyncSaveStats stats() const;

  struct State;  // defined in async_saver.cpp

 private:
  std::unique_ptr<State> s_;
};

}  // namespace ember::checkpoint
