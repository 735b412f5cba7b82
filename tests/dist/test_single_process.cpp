// The communicator of a world of one: every operation leaves its data as it
// was (all-reduce, broadcast) or returns it (all-to-all), and bad arguments
// are Errors as they are with MPI.
#include "dist/communicator.h"
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

TEST(SingleProcessCommunicator, BadArgumentsAreErrors) {
  dist::SingleProcessCommunicator comm;
  EXPECT_MG_ERROR(comm.all_reduce_sum({Tensor::from_indices({1}, {1})}), "float32 or float64");
  EXPECT_MG_ERROR(comm.broadcast({leaf({2}, 3)}, 1), "root 1");
  EXPECT_MG_ERROR(comm.all_to_all_counts({1, 2}), "one count per rank");
  EXPECT_MG_ERROR(comm.all_to_all(leaf({3, 2}, 4), {2}, {2}), "add up to 2");
}

TEST(SingleProcessCommunicator, RunOnAllOrFailPassesTheError) {
  dist::SingleProcessCommunicator comm;
  int calls = 0;
  dist::run_on_all_or_fail(comm, [&] { calls++; });
  EXPECT_EQ(calls, 1);
  EXPECT_MG_ERROR(dist::run_on_all_or_fail(comm, [] { throw Error("bad option --x"); }), "bad option --x");
}
