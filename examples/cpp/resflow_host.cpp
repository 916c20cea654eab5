// resflow_host.cpp: a small C++17 ranking host over the resflow C ABI.
//
// It loads an exported model, builds a request of candidates, scores it, prints the top-K
// candidates by fused score, and (with --bench) times many requests: one thread for
// several request sizes (p50, p99), then several threads sharing one model (throughput).
//
/* Build (from the repository root, after `cargo build --release -p capi`):
     g++ -std=c++17 -O2 -Iinclude examples/cpp/resflow_host.cpp \
         target/release/libresflow_capi.a -lpthread -ldl -lm -o resflow_host
*/
//
// Usage:
//   resflow_host MODEL [--candidates N] [--seed S] [--top K] [--dump]
//   resflow_host MODEL --bench [--threads T] [--calls C] [--sizes 1,100,500,2000]
#include "request.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[size_t(double(v.size() - 1) * q + 0.5)];
}

// Everything one thread needs to score requests of `n` candidates: its own workspace (made
// on that thread), a few different requests cycled so caches see varied ids, and outputs.
struct Runner {
    const ResflowModel* model;
    rf::Workspace ws;
    std::vector<rf::RequestData> data;
    std::vector<float> probs, fused;

    Runner(const ResflowModel* m, const rf::Shape& shape, size_t n, uint64_t seed) : model(m) {
        ResflowWorkspace* raw = nullptr;
        if (auto st = resflow_workspace_new(m, n, &raw); st != RESFLOW_STATUS_OK)
            rf::die("workspace", st);
        ws.reset(raw);
        for (uint64_t i = 0; i < 8; ++i)
            data.push_back(rf::RequestData::generate(shape, n, seed + i));
        for (auto& d : data) d.link();
        probs.resize(n * shape.info.tasks);
        fused.resize(n);
    }

    // Scores `calls` requests (after 3 untimed ones); returns seconds per request.
    std::vector<double> run(size_t calls) {
        std::vector<double> out;
        out.reserve(calls);
        for (size_t i = 0; i < calls + 3; ++i) {
            ResflowRequest req = data[i % data.size()].view();
            auto start = Clock::now();
            auto st = resflow_score(model, ws.get(), &req, probs.data(), probs.size(),
                                    fused.data(), fused.size());
            double t = std::chrono::duration<double>(Clock::now() - start).count();
            if (st != RESFLOW_STATUS_OK) rf::die("score", st);
            if (i >= 3) out.push_back(t);
        }
        return out;
    }
};

void bench(const ResflowModel* model, const rf::Shape& shape, const std::vector<size_t>& sizes,
           size_t calls, size_t threads) {
    std::printf("one thread, one request at a time (C ABI)\n");
    std::printf("%10s %10s %10s %16s\n", "candidates", "p50 ms", "p99 ms", "candidates/s");
    for (size_t n : sizes) {
        size_t c = std::max<size_t>(50, calls * 100 / std::max<size_t>(n, 100));
        auto t = Runner(model, shape, n, 1000 + n).run(c);
        double p50 = percentile(t, 0.5);
        std::printf("%10zu %10.4f %10.4f %16.0f\n", n, p50 * 1e3, percentile(t, 0.99) * 1e3,
                    double(n) / p50);
    }
    // Throughput: `k` threads share the model, each with its own workspace; they prepare,
    // wait for a common start, then score `c` requests each.
    size_t n = 500;
    size_t c = std::max<size_t>(50, calls);
    for (size_t k = 1; k <= threads; k = (k == threads ? k + 1 : std::min(threads, k * 2))) {
        std::vector<std::vector<double>> lat(k);
        std::atomic<size_t> ready{0};
        std::atomic<bool> go{false};
        std::vector<std::thread> pool;
        for (size_t i = 0; i < k; ++i)
            pool.emplace_back([&, i] {
                Runner runner(model, shape, n, 7 + 100 * i);
                ready.fetch_add(1);
                while (!go.load()) std::this_thread::yield();
                lat[i] = runner.run(c);
            });
        while (ready.load() < k) std::this_thread::yield();
        auto start = Clock::now();
        go.store(true);
        for (auto& th : pool) th.join();
        double wall = std::chrono::duration<double>(Clock::now() - start).count();
        std::vector<double> all;
        for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
        std::printf("%zu thread(s) sharing one model, %zu candidates: %.0f requests/s "
                    "(%.0f candidates/s), p50 %.4f ms, p99 %.4f ms\n",
                    k, n, double(all.size()) / wall, double(all.size() * n) / wall,
                    percentile(all, 0.5) * 1e3, percentile(all, 0.99) * 1e3);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr,
                     "usage: %s MODEL [--candidates N] [--seed S] [--top K] [--dump]\n"
                     "       %s MODEL --bench [--threads T] [--calls C] [--sizes a,b,c]\n",
                     argv[0], argv[0]);
        return 2;
    }
    size_t n = 100, top = 10, threads = 2, calls = 2000;
    uint64_t seed = 1;
    bool dump = false, do_bench = false;
    std::vector<size_t> sizes{1, 100, 500, 2000};
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--candidates") n = std::stoul(next());
        else if (a == "--seed") seed = std::stoull(next());
        else if (a == "--top") top = std::stoul(next());
        else if (a == "--threads") threads = std::stoul(next());
        else if (a == "--calls") calls = std::stoul(next());
        else if (a == "--dump") dump = true;
        else if (a == "--bench") do_bench = true;
        else if (a == "--sizes") {
            sizes.clear();
            std::string s = next();
            for (size_t p = 0; p < s.size();) {
                size_t q = s.find(',', p);
                sizes.push_back(std::stoul(s.substr(p, q - p)));
                p = q == std::string::npos ? s.size() : q + 1;
            }
        } else {
            std::fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }

    if (resflow_abi_version() != RESFLOW_ABI_VERSION) {
        std::fprintf(stderr, "library ABI %u, header %d\n", resflow_abi_version(),
                     RESFLOW_ABI_VERSION);
        return 1;
    }
    rf::Model model;
    {
        ResflowModel* raw = nullptr;
        if (auto st = resflow_model_load(RESFLOW_ABI_VERSION, argv[1], &raw);
            st != RESFLOW_STATUS_OK)
            rf::die("load", st);
        model.reset(raw);
    }
    rf::Shape shape = rf::shape_of(model.get());
    if (do_bench) {
        std::printf("resflow %s, model %s: %zu tasks, %zu request + %zu candidate fields, "
                    "%zu dense\n",
                    resflow_version(), argv[1], shape.info.tasks, shape.request.size(),
                    shape.candidate.size(), shape.info.dense);
        bench(model.get(), shape, sizes, calls, threads);
        return 0;
    }

    // One request: build, score, rank.
    rf::Workspace ws;
    {
        ResflowWorkspace* raw = nullptr;
        if (auto st = resflow_workspace_new(model.get(), std::max<size_t>(n, 1), &raw);
            st != RESFLOW_STATUS_OK)
            rf::die("workspace", st);
        ws.reset(raw);
    }
    rf::RequestData data = rf::RequestData::generate(shape, n, seed);
    ResflowRequest req = data.view();
    std::vector<float> probs(n * shape.info.tasks), fused(n);
    if (auto st = resflow_score(model.get(), ws.get(), &req, probs.data(), probs.size(),
                                fused.data(), fused.size());
        st != RESFLOW_STATUS_OK)
        rf::die("score", st);
    if (dump) {
        // Every candidate: index, fused score, then each task's probability.
        for (size_t r = 0; r < n; ++r) {
            std::printf("%zu %.9g", r, fused[r]);
            for (size_t t = 0; t < shape.info.tasks; ++t)
                std::printf(" %.9g", probs[r * shape.info.tasks + t]);
            std::printf("\n");
        }
        return 0;
    }
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    top = std::min(top, n);
    std::partial_sort(order.begin(), order.begin() + top, order.end(),
                      [&](size_t a, size_t b) { return fused[a] > fused[b]; });
    std::printf("top %zu of %zu candidates by fused score\n", top, n);
    std::printf("%6s %10s", "rank", "candidate");
    std::printf(" %10s", "fused");
    for (auto& t : shape.tasks) std::printf(" %10s", t.c_str());
    std::printf("\n");
    for (size_t k = 0; k < top; ++k) {
        size_t r = order[k];
        std::printf("%6zu %10zu %10.6f", k + 1, r, fused[r]);
        for (size_t t = 0; t < shape.info.tasks; ++t)
            std::printf(" %10.6f", probs[r * shape.info.tasks + t]);
        std::printf("\n");
    }
    return 0;
}
