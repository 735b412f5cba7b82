// The MPI communicator under mpirun (2 ranks; the FourRanks test with 4):
// sums in rank order whatever the timing, broadcasts from any root,
// all-to-all with different counts per pair of ranks, and sizes that differ
// between ranks, or arguments one rank refuses, give an Error on every rank
// instead of a hang.
#include <functional>

#include "dist/communicator.h"
#include "dist/mpi_communicator.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {
// Rank r's tensor: values (r + 1) * (i + 1) / 3 for element i.
Tensor rank_tensor(int rank, int64_t n, DType dtype) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (rank + 1.0) * (i + 1.0) / 3.0;
  return Tensor::from_vector(v, {n}, dtype);
}

void expect_all_to_all_exchanges(dist::Communicator& comm) {
  // rank r sends (r + s + 1) rows to rank s; a row holds (sender, receiver, index in block)
  const int n = comm.world_size(), me = comm.rank();
  std::vector<int64_t> send(n);
  std::vector<double> rows;
  for (int s = 0; s < n; ++s) {
    send[s] = me + s + 1;
    for (int64_t j = 0; j < send[s]; ++j) rows.insert(rows.end(), {double(me), double(s), double(j)});
  }
  const int64_t total = static_cast<int64_t>(rows.size() / 3);
  const std::vector<int64_t> recv = comm.all_to_all_counts(send);
  std::vector<double> want;
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(recv[r], r + me + 1);
    for (int64_t j = 0; j < recv[r]; ++j) want.insert(want.end(), {double(r), double(me), double(j)});
  }
  const Tensor got = comm.all_to_all(Tensor::from_vector(rows, {total, 3}, DType::Float64), send, recv);
  expect_near(values(got), want, 0.0);
}
}  // namespace

TEST(MpiCommunicator, AllReduceSumsInRankOrder) {
  dist::CommPtr comm = dist::world();
  ASSERT_TRUE(dist::built_with_mpi());
  ASSERT_EQ(comm->world_size(), 2);
  Tensor a = rank_tensor(comm->rank(), 5, DType::Float64), b = rank_tensor(comm->rank(), 3, DType::Float32);
  comm->all_reduce_sum({a, b});
  std::vector<double> want_a(5), want_b(3);
  for (int64_t i = 0; i < 5; ++i) want_a[i] = (1.0 * (i + 1.0) / 3.0) + (2.0 * (i + 1.0) / 3.0);
  for (int64_t i = 0; i < 3; ++i)
    want_b[i] = static_cast<float>(double(float(1.0 * (i + 1.0) / 3.0)) + double(float(2.0 * (i + 1.0) / 3.0)));
  expect_near(values(a), want_a, 0.0);
  expect_near(values(b), want_b, 0.0);
}

TEST(MpiCommunicator, AllReduceSumsEveryBucket) {
  // two tensors of 1.5 buckets each: the sums cross three bucket boundaries
  dist::CommPtr comm = dist::world();
  const int n = comm->world_size(), rank = comm->rank();
  const int64_t size = dist::MpiCommunicator::kAllReduceBucket * 3 / 2;
  std::vector<double> a(size), b(size);
  for (int64_t i = 0; i < size; ++i) a[i] = static_cast<double>(i % 1000) + rank, b[i] = -static_cast<double>(i % 7) * (rank + 1);
  Tensor ta = Tensor::from_vector(a, {size}, DType::Float64), tb = Tensor::from_vector(b, {size}, DType::Float32);
  comm->all_reduce_sum({ta, tb});
  const std::vector<double> sa = ta.to_vector(), sb = tb.to_vector();
  for (int64_t i = 0; i < size; ++i) {
    ASSERT_EQ(sa[i], n * static_cast<double>(i % 1000) + n * (n - 1) / 2) << i;
    ASSERT_EQ(sb[i], -static_cast<double>(i % 7) * n * (n + 1) / 2) << i;
  }
}

TEST(MpiCommunicator, AllReduceOfAViewWritesTheView) {
  dist::CommPtr comm = dist::world();
  Tensor base = Tensor::zeros({3, 4}, DType::Float64);
  Tensor column = narrow(base, 1, 1, 1);
  column.fill_(comm->rank() + 1.0);
  comm->all_reduce_sum({column});
  const std::vector<double> v = values(base);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(v[i * 4 + j], j == 1 ? 3.0 : 0.0);
}

TEST(MpiCommunicator, BroadcastsFromEachRoot) {
  dist::CommPtr comm = dist::world();
  for (int root = 0; root < comm->world_size(); ++root) {
    Tensor x = rank_tensor(comm->rank(), 4, DType::Float64);
    Tensor idx = Tensor::from_indices({comm->rank() * 10 + 1, comm->rank() * 10 + 2}, {2});
    comm->broadcast({x, idx}, root);
    expect_near(values(x), values(rank_tensor(root, 4, DType::Float64)), 0.0);
    EXPECT_EQ(idx.to_indices(), std::vector<int64_t>({root * 10 + 1, root * 10 + 2}));
  }
  comm->barrier();
}

TEST(MpiCommunicator, AllToAllWithVariableCounts) { expect_all_to_all_exchanges(*dist::world()); }

TEST(MpiCommunicator, MismatchedSizesAreTheSameErrorOnEveryRank) {
  dist::CommPtr comm = dist::world();
  Tensor x = Tensor::zeros({comm->rank() == 0 ? 3 : 4}, DType::Float64);
  EXPECT_MG_ERROR(comm->all_reduce_sum({x}), "ranks disagree on the number of elements");
  EXPECT_MG_ERROR(comm->broadcast({x}), "ranks disagree on the number of bytes");
  comm->barrier();  // every rank is still in step
}

TEST(MpiCommunicator, BadArgumentsOnOneRankAreAnErrorOnEveryRank) {
  dist::CommPtr comm = dist::world();
  const bool bad = comm->rank() == 1;
  auto expect_refused = [&](const std::function<void()>& call, const char* own_error) {
    if (bad)
      EXPECT_MG_ERROR(call(), own_error);
    else
      EXPECT_MG_ERROR(call(), "rank 1 refused its arguments");
  };
  Tensor x = bad ? Tensor::from_indices({1, 2}, {2}) : Tensor::zeros({2}, DType::Float64);
  expect_refused([&] { comm->all_reduce_sum({x}); }, "float32 or float64");
  expect_refused([&] { comm->broadcast({x}, bad ? 5 : 0); }, "root 5");
  const std::vector<int64_t> counts(bad ? 3 : 2, 1);
  expect_refused([&] { comm->all_to_all_counts(counts); }, "one count per rank");
  Tensor rows = Tensor::zeros({bad ? 3 : 2, 4}, DType::Float64);
  expect_refused([&] { comm->all_to_all(rows, {1, 1}, {1, 1}); }, "add up to 2");
  comm->barrier();  // every rank is still in step
}

TEST(MpiCommunicator, AFailureOnOneRankFailsAllWithItsMessage) {
  dist::CommPtr comm = dist::world();
  auto fail_on_last = [&] {
    if (comm->rank() == comm->world_size() - 1) throw Error("train_lm: --batch must be positive");
  };
  EXPECT_MG_ERROR(dist::run_on_all_or_fail(*comm, fail_on_last), "rank 1: train_lm: --batch must be positive");
  int calls = 0;
  dist::run_on_all_or_fail(*comm, [&] { calls++; });
  EXPECT_EQ(calls, 1);
}

TEST(MpiCommunicator, FourRanksExchangeAndSum) {
  dist::CommPtr comm = dist::world();
  ASSERT_EQ(comm->world_size(), 4);
  expect_all_to_all_exchanges(*comm);
  Tensor a = rank_tensor(comm->rank(), 6, DType::Float64);
  comm->all_reduce_sum({a});
  std::vector<double> want(6);
  for (int64_t i = 0; i < 6; ++i) {
    double s = 0;
    for (int r = 0; r < 4; ++r) s += (r + 1.0) * (i + 1.0) / 3.0;
    want[i] = s;
  }
  expect_near(values(a), want, 0.0);
}

TEST(MpiCommunicator, GatherRowsStacksEveryRanksRowsOnRoot) {
  dist::CommPtr comm = dist::world();
  const int n = comm->world_size(), rank = comm->rank();
  // rank r holds r + 1 rows of [2, 3], each element 100 r + its index
  auto rows_of = [](int r) {
    std::vector<double> v((r + 1) * 6);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 100.0 * r + static_cast<double>(i);
    return v;
  };
  for (int root = 0; root < n; ++root) {
    const Tensor got = dist::gather_rows(*comm, Tensor::from_vector(rows_of(rank), {rank + 1, 2, 3}, DType::Float64), root);
    if (rank != root) {
      EXPECT_FALSE(got.defined());
      continue;
    }
    std::vector<double> expected;
    for (int r = 0; r < n; ++r) {
      const std::vector<double> v = rows_of(r);
      expected.insert(expected.end(), v.begin(), v.end());
    }
    ASSERT_EQ(got.shape(), (Shape{n * (n + 1) / 2, 2, 3}));
    EXPECT_EQ(got.to_vector(), expected);
  }
}

TEST(MpiCommunicator, GatherRowsOfAnUndefinedTensorOnOneRankIsAnErrorOnEveryRank) {
  dist::CommPtr comm = dist::world();
  const Tensor rows = comm->rank() == 1 ? Tensor() : Tensor::zeros({2, 3});
  if (comm->rank() == 1)
    EXPECT_MG_ERROR(dist::gather_rows(*comm, rows), "gather_rows: rows must be a tensor of at least one dim");
  else
    EXPECT_MG_ERROR(dist::gather_rows(*comm, rows), "rank 1 refused its arguments");
}
