// The CUDA caching allocator (allocator.cu); the backend registers it for
// DeviceType::CUDA when it is first used.
#pragma once
#include "tensor/allocator.h"

namespace moegrad::cuda {

Allocator& device_allocator();

}  // namespace moegrad::cuda
