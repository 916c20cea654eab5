// request.hpp: small C++17 helpers over the resflow C ABI, shared by the example host and
// the error-path tests: RAII owners for the handles, the model's shape, and a
// deterministic request generator (SplitMix64) that the Rust tests reproduce exactly.
#pragma once

#include "resflow.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace rf {

// Owners that free the handles (resflow_*_free accept NULL).
struct ModelDeleter {
    void operator()(ResflowModel* m) const { resflow_model_free(m); }
};
struct WorkspaceDeleter {
    void operator()(ResflowWorkspace* w) const { resflow_workspace_free(w); }
};
using Model = std::unique_ptr<ResflowModel, ModelDeleter>;
using Workspace = std::unique_ptr<ResflowWorkspace, WorkspaceDeleter>;

// Prints the status, its string and the thread's last error, then exits.
inline void die(const char* what, ResflowStatus s) {
    std::fprintf(stderr, "%s: %s (%d): %s\n", what, resflow_status_string(s), (int)s,
                 resflow_last_error());
    std::exit(1);
}

// The fields of one group, in the order the request expects them.
struct FieldDesc {
    std::string name;
    uint32_t vocab;
    bool multi_valued;
};

struct Shape {
    ResflowModelInfo info{};
    std::vector<FieldDesc> request, candidate;
    std::vector<std::string> tasks;
};

inline Shape shape_of(const ResflowModel* m) {
    Shape s;
    s.info.struct_size = sizeof(ResflowModelInfo);
    if (auto st = resflow_model_info(m, &s.info); st != RESFLOW_STATUS_OK) die("model info", st);
    auto fields = [&](uint32_t group, size_t count, std::vector<FieldDesc>& out) {
        for (size_t i = 0; i < count; ++i) {
            ResflowFieldInfo f{};
            f.struct_size = sizeof f;
            if (auto st = resflow_model_field(m, group, i, &f); st != RESFLOW_STATUS_OK)
                die("model field", st);
            out.push_back({f.name, f.vocab, f.multi_valued});
        }
    };
    fields(RESFLOW_REQUEST_FIELDS, s.info.request_ids + s.info.request_bags, s.request);
    fields(RESFLOW_CANDIDATE_FIELDS, s.info.candidate_ids + s.info.candidate_bags, s.candidate);
    for (size_t t = 0; t < s.info.tasks; ++t) s.tasks.push_back(resflow_model_task_name(m, t));
    return s;
}

// SplitMix64 (Steele, Lea and Flood): the same sequence as the Rust tests' generator.
struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

// One request's owned buffers, and the ResflowRequest that borrows them.
struct RequestData {
    size_t n = 0;
    std::vector<uint32_t> ids, request_ids;
    std::vector<std::vector<uint64_t>> bag_offsets, request_bag_offsets;
    std::vector<std::vector<uint32_t>> bag_ids, request_bag_ids;
    std::vector<ResflowBag> bags, request_bags;
    std::vector<float> dense;
    size_t dense_stride = 0;

    // Generation order (the Rust side follows it): request ids, request bags (1 to 3 ids),
    // candidate ids row by row, candidate bags field by field (0 to 3 ids per row), dense
    // features row by row in [-1, 1) with a stride of D + 3 (padding left at 0).
    static RequestData generate(const Shape& s, size_t n, uint64_t seed) {
        RequestData d;
        d.n = n;
        SplitMix64 rng{seed};
        const auto& info = s.info;
        for (size_t k = 0; k < info.request_ids; ++k)
            d.request_ids.push_back(uint32_t(rng.next() % s.request[k].vocab));
        for (size_t b = 0; b < info.request_bags; ++b) {
            uint32_t vocab = s.request[info.request_ids + b].vocab;
            size_t len = 1 + rng.next() % 3;
            std::vector<uint32_t> ids;
            for (size_t i = 0; i < len; ++i) ids.push_back(uint32_t(rng.next() % vocab));
            d.request_bag_offsets.push_back({0, uint64_t(len)});
            d.request_bag_ids.push_back(ids);
        }
        for (size_t r = 0; r < n; ++r)
            for (size_t k = 0; k < info.candidate_ids; ++k)
                d.ids.push_back(uint32_t(rng.next() % s.candidate[k].vocab));
        for (size_t b = 0; b < info.candidate_bags; ++b) {
            uint32_t vocab = s.candidate[info.candidate_ids + b].vocab;
            std::vector<uint64_t> offsets{0};
            std::vector<uint32_t> ids;
            for (size_t r = 0; r < n; ++r) {
                size_t len = rng.next() % 4;
                for (size_t i = 0; i < len; ++i) ids.push_back(uint32_t(rng.next() % vocab));
                offsets.push_back(ids.size());
            }
            d.bag_offsets.push_back(offsets);
            d.bag_ids.push_back(ids);
        }
        d.dense_stride = info.dense + 3;
        d.dense.assign(n * d.dense_stride, 0.0f);
        for (size_t r = 0; r < n; ++r)
            for (size_t j = 0; j < info.dense; ++j)
                d.dense[r * d.dense_stride + j] =
                    float(double(rng.next() >> 40) / double(1 << 24) * 2.0 - 1.0);
        d.link();
        return d;
    }

    // Points the ResflowBag arrays at the owned vectors (call again after copying).
    void link() {
        bags.clear();
        request_bags.clear();
        for (size_t b = 0; b < bag_ids.size(); ++b)
            bags.push_back({bag_offsets[b].data(), bag_offsets[b].size(), bag_ids[b].data(),
                            bag_ids[b].size()});
        for (size_t b = 0; b < request_bag_ids.size(); ++b)
            request_bags.push_back({request_bag_offsets[b].data(), request_bag_offsets[b].size(),
                                    request_bag_ids[b].data(), request_bag_ids[b].size()});
    }

    ResflowRequest view() const {
        ResflowRequest r{};
        r.struct_size = sizeof r;
        r.candidates = n;
        r.ids = ids.data();
        r.ids_len = ids.size();
        r.bags = bags.data();
        r.bags_len = bags.size();
        r.dense = dense.data();
        r.dense_len = dense.size();
        r.dense_stride = dense_stride;
        r.request_ids = request_ids.data();
        r.request_ids_len = request_ids.size();
        r.request_bags = request_bags.data();
        r.request_bags_len = request_bags.size();
        return r;
    }
};

}  // namespace rf
