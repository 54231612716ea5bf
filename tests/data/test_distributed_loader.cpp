// DataLoader with a DistributedSampler (DataLoaderOptions::distributed): each rank's batches are
// its sampler slice of the epoch in order (the sampler itself matches torch's, see
// test_distributed_sampler.cpp), a new permutation per epoch, the ranks together read every
// example; mid-epoch state resumes with the remaining batches, from another rank too; another
// world size is accepted only at an epoch boundary (with a notice), mid-epoch it is an error
// naming both sizes; shuffle on the loader as well is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ember/runtime/ops.h"
#include "ember/train/data/dataloader.h"

namespace ember::data {
namespace {

// Example i holds the value i, so a batch shows which examples it holds.
std::shared_ptr<TensorDataset> numbered(int64_t n) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<double>(i));
  return std::make_shared<TensorDataset>(std::vector<Tensor>{from_vector(v, {n, 1})});
}

std::vector<int64_t> ids(const Batch& b) {
  std::vector<int64_t> out;
  const Tensor t = b[0].to(DType::f64).contiguous();
  const double* p = t.data_ptr<double>();
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(static_cast<int64_t>(p[i]));
  return out;
}

DataLoaderOptions opts(int64_t world, int64_t rank, int64_t batch = 3, bool drop_last = false) {
  DataLoaderOptions o;
  o.batch_size = batch;
  o.seed = 5;
  o.drop_last = drop_last;
  o.distributed = DistributedSamplerOptions{.num_replicas = world, .rank = rank, .shuffle = true, .seed = 17};
  return o;
}

std::vector<std::vector<int64_t>> epoch_batches(DataLoader& l, int64_t max_batches = -1) {
  std::vector<std::vector<int64_t>> out;
  for (auto it = l.begin(); it != l.end(); ++it) {
    out.push_back(ids(*it));
    if (max_batches >= 0 && static_cast<int64_t>(out.size()) == max_batches) break;
  }
  return out;
}

TEST(DistributedLoader, EachRankReadsItsSamplerSliceInBatches) {
  auto ds = numbered(23);
  for (int64_t world : {1, 2, 3, 4}) {
    std::multiset<int64_t> all;
    for (int64_t rank = 0; rank < world; ++rank) {
      SCOPED_TRACE(std::to_string(world) + " ranks, rank " + std::to_string(rank));
      DataLoader loader(ds, opts(world, rank));
      DistributedSampler sampler(23, *loader.options().distributed);
      for (int64_t epoch = 0; epoch < 3; ++epoch) {
        sampler.set_epoch(epoch);
        const std::vector<int64_t> expected = sampler.indices();
        std::vector<int64_t> got;
        const auto batches = epoch_batches(loader);
        EXPECT_EQ(static_cast<int64_t>(batches.size()), loader.len());
        for (const auto& b : batches) got.insert(got.end(), b.begin(), b.end());
        EXPECT_EQ(got, expected) << "epoch " << epoch;
        if (epoch == 0) all.insert(got.begin(), got.end());
      }
    }
    std::set<int64_t> distinct(all.begin(), all.end());
    EXPECT_EQ(distinct.size(), 23u) << "the ranks together read every example";
    EXPECT_EQ(all.size() % static_cast<size_t>(world), 0u) << "padded to equal lengths";
  }
}

TEST(DistributedLoader, DropLastOfTheLoaderAndOfTheSampler) {
  auto ds = numbered(23);
  DataLoader loader(ds, opts(2, 1, 5, /*drop_last=*/true));  // 12 per rank: 2 full batches
  EXPECT_EQ(loader.len(), 2);
  for (const auto& b : epoch_batches(loader)) EXPECT_EQ(b.size(), 5u);
  DataLoaderOptions o = opts(2, 0);
  o.distributed->drop_last = true;  // 11 per rank, no padding
  DataLoader cut(ds, o);
  std::vector<int64_t> got;
  for (const auto& b : epoch_batches(cut)) got.insert(got.end(), b.begin(), b.end());
  EXPECT_EQ(got.size(), 11u);
}

TEST(DistributedLoader, MidEpochStateResumesTheRemainingBatchesOnAnyRank) {
  auto ds = numbered(40);
  // what ranks 0 and 1 read in epoch 1
  std::vector<std::vector<int64_t>> reference[2];
  for (int64_t rank : {0, 1}) {
    DataLoader full(ds, opts(2, rank));
    epoch_batches(full);
    reference[rank] = epoch_batches(full);
  }
  // rank 1 saves two batches into epoch 1 (a state taken inside the loop resumes after it)
  DataLoader stopped(ds, opts(2, 1));
  epoch_batches(stopped);
  Value state;
  int64_t k = 0;
  for (auto it = stopped.begin(); it != stopped.end(); ++it)
    if (++k == 2) {
      state = stopped.state_dict();
      break;
    }
  EXPECT_EQ(state.at("batches_seen").as_int(), 2);
  EXPECT_EQ(state.at("distributed").at("num_replicas").as_int(), 2);
  for (int64_t rank : {1, 0}) {  // ranks advance together: rank 0 may resume from rank 1's state
    SCOPED_TRACE(rank);
    DataLoader resumed(ds, opts(2, rank));
    resumed.load_state_dict(state);
    EXPECT_EQ(resumed.load_notice(), "");
    const auto rest = epoch_batches(resumed);
    ASSERT_EQ(rest.size(), reference[rank].size() - 2);
    for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], reference[rank][i + 2]);
  }
}

TEST(DistributedLoader, AnotherWorldSizeOnlyAtAnEpochBoundary) {
  auto ds = numbered(40);
  DataLoader four(ds, opts(4, 3));
  epoch_batches(four);
  const Value boundary = four.state_dict();  // the start of epoch 1
  Value mid;
  for (auto it = four.begin(); it != four.end(); ++it) {
    mid = four.state_dict();
    break;
  }
  DataLoader two(ds, opts(2, 0));
  two.load_state_dict(boundary);
  EXPECT_EQ(two.load_notice(), "[DataLoader] resuming at the start of epoch 1 with 2 ranks; the state was saved by a run of 4 ranks");
  DistributedSampler s(40, *two.options().distributed);
  s.set_epoch(1);
  std::vector<int64_t> got;
  for (const auto& b : epoch_batches(two)) got.insert(got.end(), b.begin(), b.end());
  EXPECT_EQ(got, s.indices());
  DataLoader other(ds, opts(2, 0));
  try {
    other.load_state_dict(mid);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("saved mid-epoch (1 batches in) by a run of 4 ranks, but this loader is one of 2"),
              std::string::npos) << what;
  }
  // a loader that is not distributed resumes a distributed one's state (and the other way round)
  // at an epoch boundary only; another shuffle setting, or other sampler settings, are refused
  DataLoader plain(ds, DataLoaderOptions{.batch_size = 3, .seed = 5});
  EXPECT_THROW(plain.load_state_dict(boundary), Error);  // shuffle: false here, true there
  EXPECT_THROW(two.load_state_dict(plain.state_dict()), Error);
  DataLoader shuffled(ds, DataLoaderOptions{.batch_size = 3, .shuffle = true, .seed = 5});
  shuffled.load_state_dict(boundary);
  EXPECT_EQ(shuffled.load_notice(),
            "[DataLoader] resuming at the start of epoch 1 with 1 process; the state was saved by a run of 4 ranks");
  EXPECT_EQ(epoch_batches(shuffled).size(), 14u);  // all 40 samples, in batches of 3
  epoch_batches(shuffled);
  DataLoader two_again(ds, opts(2, 1));
  two_again.load_state_dict(shuffled.state_dict());
  EXPECT_EQ(two_again.load_notice(),
            "[DataLoader] resuming at the start of epoch 3 with 2 ranks; the state was saved by a loader that was not "
            "distributed");
  Value plain_mid;
  for (auto it = shuffled.begin(); it != shuffled.end(); ++it) {
    plain_mid = shuffled.state_dict();
    break;
  }
  try {
    two_again.load_state_dict(plain_mid);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("saved mid-epoch (1 batches in) by a loader that was not distributed, but "
                                         "this loader is one of 2 ranks"),
              std::string::npos) << e.what();
  }
  DataLoaderOptions reseeded = opts(4, 0);
  reseeded.distributed->seed = 18;
  DataLoader other_seed(ds, reseeded);
  EXPECT_THROW(other_seed.load_state_dict(boundary), Error);
}

TEST(DistributedLoader, ShuffleOnTheLoaderTooIsRefused) {
  DataLoaderOptions o = opts(2, 0);
  o.shuffle = true;
  try {
    DataLoader l(numbered(10), o);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shuffle must be false with a distributed sampler"), std::string::npos);
  }
  EXPECT_THROW(DataLoader(numbered(10), opts(2, 2)), Error);  // rank out of range (the sampler's check)
}

}  // namespace
}  // namespace ember::data
