/* minimal.c: the smallest complete use of the resflow C ABI, in plain C99: load a model,
 * make a workspace, score one request of 4 candidates (every id 0, empty bags, zero dense
 * features), print the fused scores, free everything. It also checks that the header
 * compiles as C. Run by `cargo test -p capi`.
 *
 * Build (from the repository root, after `cargo build --release -p capi`):
 *   gcc -std=c99 -O2 -Iinclude examples/cpp/minimal.c target/release/libresflow_capi.a
 *       -lpthread -ldl -lm -o minimal
 * Usage: minimal MODEL
 */
#include "resflow.h"

#include <stdio.h>
#include <stdlib.h>

#define N 4

static int fail(const char *what, ResflowStatus st) {
    fprintf(stderr, "%s: %s: %s\n", what, resflow_status_string(st), resflow_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    ResflowModel *model = NULL;
    ResflowStatus st = resflow_model_load(RESFLOW_ABI_VERSION, argv[1], &model);
    if (st != RESFLOW_STATUS_OK) return fail("load", st);

    ResflowModelInfo info = {sizeof(ResflowModelInfo), 0, 0, 0, 0, 0, 0, 0};
    st = resflow_model_info(model, &info);
    if (st != RESFLOW_STATUS_OK) return fail("info", st);

    ResflowWorkspace *ws = NULL;
    st = resflow_workspace_new(model, N, &ws);
    if (st != RESFLOW_STATUS_OK) return fail("workspace", st);

    /* Every id 0 (always in range), every bag empty, every dense feature 0. */
    uint32_t *ids = calloc(N * info.candidate_ids + 1, sizeof *ids);
    uint32_t *request_ids = calloc(info.request_ids + 1, sizeof *request_ids);
    float *dense = calloc(N * info.dense + 1, sizeof *dense);
    float *probs = calloc(N * info.tasks, sizeof *probs);
    float fused[N];
    uint64_t offsets[N + 1] = {0};
    ResflowBag *bags = calloc(info.candidate_bags + 1, sizeof *bags);
    ResflowBag *request_bags = calloc(info.request_bags + 1, sizeof *request_bags);
    for (size_t b = 0; b < info.candidate_bags; ++b) {
        bags[b].offsets = offsets;
        bags[b].offsets_len = N + 1;
    }
    for (size_t b = 0; b < info.request_bags; ++b) {
        request_bags[b].offsets = offsets;
        request_bags[b].offsets_len = 2;
    }

    ResflowRequest req;
    req.struct_size = sizeof req;
    req.candidates = N;
    req.ids = ids;
    req.ids_len = N * info.candidate_ids;
    req.bags = bags;
    req.bags_len = info.candidate_bags;
    req.dense = dense;
    req.dense_len = N * info.dense;
    req.dense_stride = info.dense;
    req.request_ids = request_ids;
    req.request_ids_len = info.request_ids;
    req.request_bags = request_bags;
    req.request_bags_len = info.request_bags;

    st = resflow_score(model, ws, &req, probs, N * info.tasks, fused, N);
    if (st != RESFLOW_STATUS_OK) return fail("score", st);
    printf("resflow %s (ABI %u): %zu tasks, first task %s\n", resflow_version(),
           resflow_abi_version(), info.tasks, resflow_model_task_name(model, 0));
    for (size_t r = 0; r < N; ++r) printf("candidate %zu: fused %.6f\n", r, fused[r]);

    free(ids);
    free(request_ids);
    free(dense);
    free(probs);
    free(bags);
    free(request_bags);
    resflow_workspace_free(ws);
    resflow_model_free(model);
    return 0;
}
