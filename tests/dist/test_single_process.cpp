// The communicator of a world of one: every operation leaves its data as it
// was (all-reduce, broadcast) or returns it (all-to-all), and bad arguments
// are Errors as they are with MPI; the world size a launcher set, and a build
// without MPI refusing to be one of several ranks.
#include <cstdlib>
#include <optional>
#include <string>

#include "dist/communicator.h"
#include "dist/staging.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

TEST(SingleProcessCommunicator, ReducesAndBroadcastsToItself) {
  dist::SingleProcessCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);
  Tensor a = leaf({3, 2}, 1), b = Tensor::from_vector({1, 2}, {2}, DType::Float32);
  const std::vector<double> a0 = values(a), b0 = values(b);
  comm.all_reduce_sum({a, b});
  comm.broadcast({a, b}, 0);
  expect_near(values(a), a0, 0.0);
  expect_near(values(b), b0, 0.0);
  comm.barrier();
}

TEST(SingleProcessCommunicator, AllToAllReturnsTheRows) {
  dist::SingleProcessCommunicator comm;
  Tensor rows = leaf({4, 3}, 2);
  const std::vector<int64_t> recv = comm.all_to_all_counts({4});
  ASSERT_EQ(recv, std::vector<int64_t>({4}));
  expect_near(values(comm.all_to_all(rows, {4}, recv)), values(rows), 0.0);
}

TEST(SingleProcessCommunicator, GatherRowsReturnsTheRows) {
  dist::SingleProcessCommunicator comm;
  const Tensor rows = leaf({3, 2, 2}, 5);
  expect_near(values(dist::gather_rows(comm, rows)), values(rows), 0.0);
  EXPECT_MG_ERROR(dist::gather_rows(comm, rows, 1), "gather_rows: root 1 is not a rank of a world of 1");
  EXPECT_MG_ERROR(dist::gather_rows(comm, Tensor()), "gather_rows: rows must be a tensor of at least one dim");
  EXPECT_MG_ERROR(dist::gather_rows(comm, Tensor::scalar(1.0)), "got a 0-d tensor");
}

TEST(SingleProcessCommunicator, BadArgumentsAreErrors) {
  dist::SingleProcessCommunicator comm;
  EXPECT_MG_ERROR(comm.all_reduce_sum({Tensor::from_indices({1}, {1})}), "float32 or float64");
  EXPECT_MG_ERROR(comm.broadcast({leaf({2}, 3)}, 1), "root 1");
  EXPECT_MG_ERROR(comm.all_to_all_counts({1, 2}), "one count per rank");
  EXPECT_MG_ERROR(comm.all_to_all(leaf({3, 2}, 4), {2}, {2}), "add up to 2");
  EXPECT_MG_ERROR(comm.all_to_all(leaf({3, 2}, 4), {3}, {2}),
                  "all_to_all: a world of 1 receives what it sends, got send 3, recv 2");
  EXPECT_MG_ERROR(comm.all_to_all(leaf({3, 2}, 4), {-1}, {-1}), "counts must be non-negative, got -1");
  EXPECT_MG_ERROR(comm.broadcast({Tensor()}, 0), "broadcast: an undefined tensor cannot be communicated");
}

// The host staging the communicators share: a packed buffer unpacks only into
// tensors it fills exactly (a short one would be read past its end).
TEST(Staging, UnpackRoundTripsAndChecksTheSize) {
  const Tensor a = Tensor::from_vector({1, 2, 3}, {3}, DType::Float64), b = Tensor::zeros({2, 2});
  const Tensor a2 = Tensor::zeros({3}, DType::Float64), b2 = Tensor::ones({2, 2});
  dist::unpack_values(dist::pack_values({a, b}, "test"), {a2, b2});
  EXPECT_EQ(a2.to_vector(), a.to_vector());
  EXPECT_EQ(b2.to_vector(), b.to_vector());
  b2.fill_(5.0);
  dist::unpack_bytes(dist::pack_bytes({a, b}, "test"), {a2, b2});
  EXPECT_EQ(b2.to_vector(), b.to_vector());
  EXPECT_MG_ERROR(dist::unpack_values({1, 2, 3}, {a2, b2}), "unpack_values: 3 values for tensors holding 7");
  EXPECT_MG_ERROR(dist::unpack_values(std::vector<double>(8, 0.0), {a2, b2}), "8 values for tensors holding 7");
  EXPECT_MG_ERROR(dist::unpack_bytes(std::vector<char>(10), {a2, b2}), "unpack_bytes: 10 bytes for tensors holding 40");
  EXPECT_MG_ERROR(dist::unpack_values({}, {Tensor()}), "unpack_values: an undefined tensor cannot receive values");
}

TEST(SingleProcessCommunicator, RunOnAllOrFailPassesTheError) {
  dist::SingleProcessCommunicator comm;
  int calls = 0;
  dist::run_on_all_or_fail(comm, [&] { calls++; });
  EXPECT_EQ(calls, 1);
  EXPECT_MG_ERROR(dist::run_on_all_or_fail(comm, [] { throw Error("bad option --x"); }), "bad option --x");
}

namespace {
// Sets (or with nullopt unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? ::setenv(name, value->c_str(), 1) : ::unsetenv(name);
  }
  ~ScopedEnv() { old_ ? ::setenv(name_, old_->c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};
}  // namespace

TEST(LaunchedWorldSize, ReadsTheLaunchersEnvironment) {
  ScopedEnv no_ompi("OMPI_COMM_WORLD_SIZE", std::nullopt), no_pmi("PMI_SIZE", std::nullopt);
  EXPECT_EQ(dist::launched_world_size(), 1);
  {
    ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", "3");
    EXPECT_EQ(dist::launched_world_size(), 3);
  }
  {
    ScopedEnv pmi("PMI_SIZE", "4");
    EXPECT_EQ(dist::launched_world_size(), 4);
  }
  for (const char* odd : {"1", "0", "-2", "2x", "", "99999999999999999999"}) {
    ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", odd);
    EXPECT_EQ(dist::launched_world_size(), 1) << odd;
  }
}

// A build without MPI started as one of several ranks would train alone in
// each and write the same files: world() refuses.
TEST(LaunchedWorldSize, ABuildWithoutMpiRefusesSeveralRanks) {
  if (dist::built_with_mpi()) GTEST_SKIP() << "this build has MPI";
  ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", "2");
  EXPECT_MG_ERROR(dist::world(), "one of 2 that a launcher started, but moegrad was built without MPI");
}
