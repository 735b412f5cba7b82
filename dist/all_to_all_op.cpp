// all_to_all_rows: the exchange forward, the reverse exchange backward (all_to_all_op.h).
#include "dist/all_to_all_op.h"

#include "autograd/node.h"
#include "tensor/error.h"

namespace moegrad::dist {

Tensor all_to_all_rows(const CommPtr& comm, const Tensor& rows, const std::vector<int64_t>& send,
                       const std::vector<int64_t>& recv) {
  MG_CHECK(comm != nullptr, "all_to_all_rows: the communicator is null");
  Tensor out = comm->all_to_all(rows, send, recv);
  attach_backward(out, "all_to_all_rows", {rows}, [comm, send, recv](const Tensor& dout) {
    return std::vector<Tensor>{comm->all_to_all(dout, recv, send)};
  });
  return out;
}

}  // namespace moegrad::dist
