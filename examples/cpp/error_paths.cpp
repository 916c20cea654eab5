// error_paths.cpp: every way a caller can get the resflow C ABI wrong gives the right
// status and a message, never a crash. Run by `cargo test -p capi` (also under
// AddressSanitizer and UndefinedBehaviorSanitizer).
//
/* Build (from the repository root, after `cargo build --release -p capi`):
     g++ -std=c++17 -O1 -g -Iinclude examples/cpp/error_paths.cpp \
         target/release/libresflow_capi.a -lpthread -ldl -lm -o error_paths
*/
// Usage: error_paths MODEL SCRATCH_DIR   (the model needs a request-level bag, a
// candidate-level bag and dense features)
#include "request.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

namespace {

int failures = 0;

// Checks a status and that a failure left a non-empty message.
void expect(const char* what, ResflowStatus got, ResflowStatus want) {
    const char* msg = resflow_last_error();
    bool ok = got == want && (want == RESFLOW_STATUS_OK || (msg && std::strlen(msg) > 0));
    std::printf("%s %-48s %s (%s)\n", ok ? "PASS" : "FAIL", what, resflow_status_string(got),
                want == RESFLOW_STATUS_OK ? "" : msg);
    if (!ok) {
        std::printf("     expected %s\n", resflow_status_string(want));
        ++failures;
    }
}

void check(const char* what, bool ok) {
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what);
    if (!ok) ++failures;
}

std::vector<char> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const char* data, size_t len) {
    std::ofstream f(path, std::ios::binary);
    f.write(data, std::streamsize(len));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const std::string path = argv[1], dir = argv[2];
    const ResflowStatus OK = RESFLOW_STATUS_OK, NUL = RESFLOW_STATUS_NULL_ARGUMENT,
                        INVALID = RESFLOW_STATUS_INVALID_ARGUMENT,
                        SMALL = RESFLOW_STATUS_BUFFER_TOO_SMALL;

    // Versions and status strings.
    check("abi version matches the header", resflow_abi_version() == RESFLOW_ABI_VERSION);
    check("version string is non-empty", std::strlen(resflow_version()) > 0);
    check("unknown status has a string",
          std::strcmp(resflow_status_string(999), "unknown status") == 0);
    check("every status has its own string",
          std::strcmp(resflow_status_string(RESFLOW_STATUS_IO), "I/O error") == 0 &&
              std::strcmp(resflow_status_string(RESFLOW_STATUS_INTERNAL), "internal error") == 0);

    // Loading.
    ResflowModel* m = reinterpret_cast<ResflowModel*>(&failures);  // must be reset to NULL
    expect("load: null path", resflow_model_load(RESFLOW_ABI_VERSION, nullptr, &m), NUL);
    check("load: *out is NULL after a failure", m == nullptr);
    expect("load: null out", resflow_model_load(RESFLOW_ABI_VERSION, path.c_str(), nullptr), NUL);
    expect("load: other ABI version", resflow_model_load(RESFLOW_ABI_VERSION + 1, path.c_str(), &m),
           RESFLOW_STATUS_ABI_MISMATCH);
    expect("load: missing file",
           resflow_model_load(RESFLOW_ABI_VERSION, (dir + "/missing.safetensors").c_str(), &m),
           RESFLOW_STATUS_IO);
    std::vector<char> bytes = read_file(path);
    check("model file is readable", bytes.size() > 64);
    for (size_t keep : {size_t(0), size_t(7), bytes.size() / 2, bytes.size() - 1}) {
        std::string t = dir + "/truncated.safetensors";
        write_file(t, bytes.data(), keep);
        expect("load: truncated file", resflow_model_load(RESFLOW_ABI_VERSION, t.c_str(), &m),
               RESFLOW_STATUS_BAD_MODEL_FILE);
    }
    rf::SplitMix64 rng{42};
    std::vector<char> noise(4096);
    for (auto& c : noise) c = char(rng.next());
    write_file(dir + "/random.safetensors", noise.data(), noise.size());
    expect("load: random bytes",
           resflow_model_load(RESFLOW_ABI_VERSION, (dir + "/random.safetensors").c_str(), &m),
           RESFLOW_STATUS_BAD_MODEL_FILE);
    expect("from_bytes: random bytes",
           resflow_model_from_bytes(RESFLOW_ABI_VERSION,
                                    reinterpret_cast<const uint8_t*>(noise.data()), noise.size(),
                                    &m),
           RESFLOW_STATUS_BAD_MODEL_FILE);
    expect("from_bytes: null bytes, non-zero length",
           resflow_model_from_bytes(RESFLOW_ABI_VERSION, nullptr, 10, &m), NUL);
    expect("from_bytes: empty", resflow_model_from_bytes(RESFLOW_ABI_VERSION, nullptr, 0, &m),
           RESFLOW_STATUS_BAD_MODEL_FILE);
    expect("from_bytes: the model file",
           resflow_model_from_bytes(RESFLOW_ABI_VERSION,
                                    reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                    &m),
           OK);
    rf::Model other(m);
    expect("load: the model file", resflow_model_load(RESFLOW_ABI_VERSION, path.c_str(), &m), OK);
    rf::Model model(m);
    expect("load: unknown precision",
           resflow_model_load_with_precision(RESFLOW_ABI_VERSION, path.c_str(), 7, &m), INVALID);
    check("load: unknown precision leaves NULL", m == nullptr);
    expect("load: int8 precision",
           resflow_model_load_with_precision(RESFLOW_ABI_VERSION, path.c_str(),
                                             RESFLOW_PRECISION_INT8, &m),
           OK);
    rf::Model int8(m);

    // Freeing NULL is a no-op.
    resflow_model_free(nullptr);
    resflow_workspace_free(nullptr);
    check("freeing NULL handles does nothing", true);

    // Model info.
    ResflowModelInfo info{};
    info.struct_size = sizeof info;
    expect("info: null model", resflow_model_info(nullptr, &info), NUL);
    expect("info: null info", resflow_model_info(model.get(), nullptr), NUL);
    info.struct_size = 8;
    expect("info: struct_size too small", resflow_model_info(model.get(), &info), INVALID);
    rf::Shape shape = rf::shape_of(model.get());
    check("test model has a request bag, a candidate bag and dense features",
          shape.info.request_bags > 0 && shape.info.candidate_bags > 0 && shape.info.dense > 0);
    ResflowFieldInfo field{};
    field.struct_size = sizeof field;
    expect("field: index past the end",
           resflow_model_field(model.get(), RESFLOW_CANDIDATE_FIELDS, 1000, &field), INVALID);
    expect("field: unknown group", resflow_model_field(model.get(), 7, 0, &field), INVALID);
    expect("field: null model", resflow_model_field(nullptr, 0, 0, &field), NUL);
    check("task name: index past the end is NULL",
          resflow_model_task_name(model.get(), 99) == nullptr);
    check("task name: null model is NULL", resflow_model_task_name(nullptr, 0) == nullptr);

    // Workspaces.
    ResflowWorkspace* w = nullptr;
    expect("workspace: null model", resflow_workspace_new(nullptr, 8, &w), NUL);
    expect("workspace: zero candidates", resflow_workspace_new(model.get(), 0, &w), INVALID);
    expect("workspace: absurd size", resflow_workspace_new(model.get(), SIZE_MAX, &w), INVALID);
    expect("workspace: null out", resflow_workspace_new(model.get(), 8, nullptr), NUL);
    expect("workspace: 8 candidates", resflow_workspace_new(model.get(), 8, &w), OK);
    rf::Workspace ws(w);
    expect("workspace: other model", resflow_workspace_new(other.get(), 8, &w), OK);
    rf::Workspace other_ws(w);

    // Scoring: a valid request first, then one mistake at a time.
    const size_t n = 8, T = shape.info.tasks;
    rf::RequestData data = rf::RequestData::generate(shape, n, 7);
    std::vector<float> probs(n * T), fused(n);
    auto score = [&](const ResflowRequest& r, size_t probs_len = SIZE_MAX,
                     size_t fused_len = SIZE_MAX) {
        return resflow_score(model.get(), ws.get(), &r, probs.data(),
                             probs_len == SIZE_MAX ? probs.size() : probs_len, fused.data(),
                             fused_len == SIZE_MAX ? fused.size() : fused_len);
    };
    const ResflowRequest good = data.view();
    expect("score: valid request", score(good), OK);
    {
        // The same request on the int8 model: probabilities near the f32 ones.
        expect("workspace: int8 model", resflow_workspace_new(int8.get(), 8, &w), OK);
        rf::Workspace int8_ws(w);
        std::vector<float> q(n * T), qf(n);
        expect("score: int8 model",
               resflow_score(int8.get(), int8_ws.get(), &good, q.data(), q.size(), qf.data(), n),
               OK);
        float gap = 0.0f;
        for (size_t i = 0; i < q.size(); ++i) gap = std::max(gap, std::fabs(q[i] - probs[i]));
        check("score: int8 probabilities near f32", gap < 0.05f);
    }
    ResflowRequest r = good;
    expect("score: null model",
           resflow_score(nullptr, ws.get(), &r, probs.data(), probs.size(), fused.data(), n), NUL);
    expect("score: null workspace",
           resflow_score(model.get(), nullptr, &r, probs.data(), probs.size(), fused.data(), n),
           NUL);
    expect("score: null request",
           resflow_score(model.get(), ws.get(), nullptr, probs.data(), probs.size(), fused.data(),
                         n),
           NUL);
    expect("score: workspace of another model",
           resflow_score(model.get(), other_ws.get(), &r, probs.data(), probs.size(),
                         fused.data(), n),
           INVALID);
    expect("score: null probs",
           resflow_score(model.get(), ws.get(), &r, nullptr, probs.size(), fused.data(), n), NUL);
    expect("score: overlapping outputs",
           resflow_score(model.get(), ws.get(), &r, probs.data(), probs.size(), probs.data() + 1,
                         n),
           INVALID);
    expect("score: short probabilities", score(good, n * T - 1), SMALL);
    expect("score: short fused scores", score(good, n * T, n - 1), SMALL);
    r = good;
    r.struct_size = 0;
    expect("score: struct_size 0", score(r), INVALID);
    r = good;
    r.candidates = n + 1;
    expect("score: more candidates than the workspace", score(r), SMALL);
    r = good;
    r.ids_len -= 1;
    expect("score: ids length does not add up", score(r), INVALID);
    r = good;
    r.ids = nullptr;
    expect("score: null ids", score(r), NUL);
    r = good;
    r.bags_len = 0;
    expect("score: missing bags", score(r), INVALID);
    r = good;
    r.request_ids_len = 0;
    expect("score: missing request ids", score(r), INVALID);

    // Bags: offsets that are not monotone, that do not end at ids_len, a short array.
    rf::RequestData bad = data;
    bad.link();
    bad.bag_offsets[0][1] = bad.bag_offsets[0][2] + 1;
    bad.link();
    expect("score: offsets not monotone", score(bad.view()), INVALID);
    bad = data;
    bad.bag_offsets[0][0] = 1;
    bad.link();
    expect("score: offsets not starting at 0", score(bad.view()), INVALID);
    bad = data;
    bad.bag_offsets[0].back() += 1;
    bad.link();
    expect("score: last offset past the ids", score(bad.view()), INVALID);
    bad = data;
    bad.bag_offsets[0].pop_back();
    bad.link();
    expect("score: too few offsets", score(bad.view()), INVALID);
    bad = data;
    bad.request_bag_offsets[0] = {0, 1000};
    bad.link();
    expect("score: request bag offset past the ids", score(bad.view()), INVALID);
    bad = data;
    bad.link();
    bad.bags[0].offsets = nullptr;
    expect("score: null offsets", score(bad.view()), NUL);

    // Ids out of range.
    bad = data;
    bad.ids[3] = shape.candidate[3 % shape.info.candidate_ids].vocab;
    bad.link();
    expect("score: candidate id out of range", score(bad.view()), INVALID);
    bad = data;
    bad.request_ids[0] = 0xFFFFFFFFu;
    bad.link();
    expect("score: request id out of range", score(bad.view()), INVALID);
    bad = data;
    bad.bag_ids[0].assign(bad.bag_ids[0].size(), 0xFFFFFFFFu);
    bad.link();
    if (!bad.bag_ids[0].empty()) expect("score: bag id out of range", score(bad.view()), INVALID);

    // Dense features.
    r = good;
    r.dense_stride = shape.info.dense - 1;
    expect("score: dense stride below D", score(r), INVALID);
    r = good;
    r.dense_len -= 4;
    expect("score: dense array too short", score(r), INVALID);
    r = good;
    r.dense_stride = SIZE_MAX / 2;
    expect("score: dense stride that overflows", score(r), INVALID);
    bad = data;
    bad.dense[1] = std::numeric_limits<float>::quiet_NaN();
    bad.link();
    expect("score: NaN dense feature", score(bad.view()), INVALID);

    // Zero candidates is fine; a valid request still scores after all the failures.
    r = good;
    r.candidates = 0;
    r.ids_len = 0;
    r.dense_len = 0;
    bad = data;
    for (auto& o : bad.bag_offsets) o = {0};
    for (auto& ids : bad.bag_ids) ids.clear();
    bad.link();
    r.bags = bad.bags.data();
    expect("score: zero candidates", score(r), OK);
    expect("score: valid request again", score(good), OK);

    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
