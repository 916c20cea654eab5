# Independent float64 reference (see golden.rs) for the golden ResFlow test: the forward pass written from the
# paper's equations with numpy, the loss as TensorFlow's weighted_cross_entropy_with_logits,
# gradients by central differences in float64 (h = 1e-6).
import numpy as np
np.set_printoptions(precision=17)
eps = 1e-3
P = {
 'emb_a': np.array([[0.1, -0.2], [0.3, 0.05], [-0.4, 0.25]]),
 'emb_b': np.array([[0.2, 0.1], [-0.1, 0.3], [0.05, -0.15], [0.4, 0.2]]),
 'bn_in_g': np.array([1.1, 0.9, 1.2, 0.8, 1.05]),
 'bn_in_b': np.array([0.01, -0.02, 0.03, 0.0, -0.01]),
 'w0': np.array([[0.2, -0.1, 0.3], [0.4, 0.2, -0.3], [-0.2, 0.1, 0.5], [0.3, -0.4, 0.1], [0.1, 0.2, -0.2]]),
 'b0': np.array([0.05, -0.05, 0.1]),
 's0': np.array([0.1, 0.2, -0.1]),
 'g0': np.array([1.0, 0.9, 1.1]), 'be0': np.array([0.0, 0.1, -0.1]),
 'wz0': np.array([0.5, -0.3, 0.2]), 'bz0': np.array([0.1]),
 'w1': np.array([[-0.3, 0.2, 0.1], [0.1, -0.2, 0.4], [0.25, 0.3, -0.1], [-0.1, 0.1, 0.2], [0.2, -0.3, 0.3]]),
 'b1': np.array([-0.1, 0.0, 0.05]),
 's1': np.array([0.3, -0.2, 0.15]),
 'g1': np.array([0.95, 1.05, 1.0]), 'be1': np.array([0.05, 0.0, 0.02]),
 'wz1': np.array([-0.2, 0.4, 0.3]), 'bz1': np.array([-0.2]),
}
a_ids = [0, 2, 1]
bags = [[1, 3], [], [2]]
dense = [0.5, -1.0, 2.0]
y = np.array([[1, 1], [0, 0], [1, 0]], dtype=float)
pos = [2.0, 3.0]; lam = [1.0, 0.5]

def forward(P):
    x = np.array([np.concatenate([P['emb_a'][a], sum((P['emb_b'][i] for i in bag), np.zeros(2)), [d]]) for a, bag, d in zip(a_ids, bags, dense)])
    x = P['bn_in_g'] * x / np.sqrt(1 + eps) + P['bn_in_b']
    prev_h, prev_z, zs = None, None, []
    for t in range(2):
        a = x @ P[f'w{t}'] + P[f'b{t}']
        a = np.where(a > 0, a, P[f's{t}'] * a)
        h = P[f'g{t}'] * a / np.sqrt(1 + eps) + P[f'be{t}']
        if t > 0:
            h = h + prev_h
        z = h @ P[f'wz{t}'] + P[f'bz{t}'][0]
        if t > 0:
            z = z + prev_z
        zs.append(z); prev_h, prev_z = h, z
    loss = 0.0
    for t in range(2):
        z, yy = zs[t], y[:, t]
        sp = np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0)   # softplus(-z)
        l = (1 - yy) * z + (1 + (pos[t] - 1) * yy) * sp
        loss += lam[t] * l.mean()
    return zs, loss

zs, loss = forward(P)
print("logits0", repr(zs[0])); print("logits1", repr(zs[1])); print("loss", repr(loss))
def grad(name):
    g = np.zeros_like(P[name]); h = 1e-6
    for idx in np.ndindex(P[name].shape):
        old = P[name][idx]
        P[name][idx] = old + h; up = forward(P)[1]
        P[name][idx] = old - h; dn = forward(P)[1]
        P[name][idx] = old; g[idx] = (up - dn) / (2 * h)
    return g
for n in ['w0', 's1', 'emb_a', 'emb_b', 'bn_in_g', 'bz1', 'g0']:
    print(n, repr(grad(n).ravel()))
