"""The family-B chest CT patient: swept tubes (sweeps) and the anatomy drawn per seed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.phantoms.chest_ct_airway import AirwayStyle

__all__ = ["PatientB", "Sweep", "bezier", "curve", "discs", "smoothstep"]


@dataclass
class Sweep:
    """Spheres (centres ``(n, 3)``, radii ``(n,)``) whose union is a set of tubes.

    ``h`` (``(n,)``, optional) turns an element into a vertical cylinder of half-height
    ``h`` (a flat-ended "coin"); 0 keeps it a sphere.
    """

    c: np.ndarray
    r: np.ndarray
    h: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.h is None:
            self.h = np.zeros_like(self.r)

    @staticmethod
    def empty() -> "Sweep":
        return Sweep(np.zeros((0, 3)), np.zeros(0))

    def __add__(self, other: "Sweep") -> "Sweep":
        return Sweep(np.concatenate([self.c, other.c]), np.concatenate([self.r, other.r]),
                      np.concatenate([self.h, other.h]))

    def grown(self, d: float) -> "Sweep":
        return Sweep(self.c, self.r + d, np.where(self.h > 0, self.h + d, 0.0))


def curve(points: np.ndarray, r0: float, r1: float | None = None) -> Sweep:
    """Spheres along a polyline ``points`` (k, 3), radius from ``r0`` to ``r1``, dense enough to be a tube."""
    r1 = r0 if r1 is None else r1
    seg = np.diff(points, axis=0)
    length = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(length)])
    total = float(cum[-1])
    step = max(0.3, 0.45 * min(r0, r1))
    s = np.linspace(0.0, total, max(2, int(np.ceil(total / step)) + 1))
    c = np.column_stack([np.interp(s, cum, points[:, k]) for k in range(3)])
    r = r0 + (r1 - r0) * (s / max(total, 1e-9))
    return Sweep(c, r)


def bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def discs(sweep: Sweep, z: float, X: np.ndarray, Y: np.ndarray, spacing: float) -> np.ndarray:
    """Cross-section of a sweep at height ``z`` on the grid ``X``, ``Y``."""
    out = np.zeros(X.shape, dtype=bool)
    if sweep.r.size == 0:
        return out
    dz = sweep.c[:, 2] - z
    flat = sweep.h > 0
    sel = np.flatnonzero(np.abs(dz) < np.where(flat, sweep.h, sweep.r))
    if sel.size == 0:
        return out
    rr = np.where(flat[sel], sweep.r[sel], np.sqrt(np.maximum(sweep.r[sel] ** 2 - dz[sel] ** 2, 0.0)))
    x0, y0 = float(X[0, 0]), float(Y[0, 0])
    n_r, n_c = X.shape
    for (cx, cy), r in zip(sweep.c[sel, :2], rr):
        c0, c1 = max(0, int((cx - r - x0) / spacing)), min(n_c, int((cx + r - x0) / spacing) + 2)
        r0, r1 = max(0, int((cy - r - y0) / spacing)), min(n_r, int((cy + r - y0) / spacing) + 2)
        if c0 >= c1 or r0 >= r1:
            continue
        out[r0:r1, c0:c1] |= (X[r0:r1, c0:c1] - cx) ** 2 + (Y[r0:r1, c0:c1] - cy) ** 2 < r * r
    return out


def smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------- the patient


class PatientB:
    """One family-B patient, z relative to the carina (0), x patient left, y posterior."""

    def __init__(self, rng: np.random.Generator, airway: AirwayStyle | None = None) -> None:
        u = rng.uniform
        self.cx, self.cy = u(-25.0, 25.0), u(-20.0, 25.0)
        self.a0 = u(128.0, 178.0)
        self.b0 = self.a0 * u(0.6, 0.78)
        self.p = u(2.2, 3.2)
        self.fat = u(5.0, 34.0)
        self.wall = u(11.0, 18.0)
        self.back = u(8.0, 16.0)               # extra posterior muscle
        self.x_mid = self.cx + u(-6.0, 6.0)    # midline of the mediastinum
        self.septum = u(5.0, 12.0)
        # Heights (mm from the carina).
        self.apex = np.array([u(52.0, 100.0), 0.0])
        self.apex[1] = self.apex[0] + u(-12.0, 12.0)
        self.dome = np.array([-u(105.0, 175.0), 0.0])
        self.dome[1] = self.dome[0] - u(-2.0, 25.0)
        self.shoulder = float(self.apex.max()) + u(0.0, 25.0)
        self.neck = (u(52.0, 70.0), u(48.0, 64.0))
        self.abdomen = u(-0.06, 0.08)
        # Cavity (anterior shift, since the back is thicker).
        self.cav_dy = -u(4.0, 14.0)
        # Apex surfaces: z_top = apex - k * rho ** q.
        self.apex_q = u(1.4, 2.4, 2)
        self.apex_drop60 = u(22.0, 45.0, 2)    # drop 60 mm from the apex point
        self.apex_xy = np.column_stack([u(0.35, 0.6, 2), u(0.05, 0.45, 2)])  # fractions of cavity axes
        # Domes: Gaussian, posterior recess.
        self.dome_h = u(28.0, 62.0, 2)
        self.dome_s = np.column_stack([u(0.32, 0.55, 2), u(0.38, 0.62, 2)])
        self.dome_c = np.column_stack([u(0.3, 0.6, 2), u(-0.2, 0.15, 2)])
        self.dome_tilt = u(0.0, 0.3, 2)
        # Spine.
        self.r_vb = u(14.0, 19.0)
        self.disc_pitch, self.disc_h, self.disc_phase = u(23.0, 30.0), u(4.0, 8.0), u(0.0, 30.0)
        # Trachea and bronchi.
        self.r_t = u(6.5, 11.5)
        self.t_wall = u(1.2, 2.6)
        self.spur = u(0.0, 0.7)                # how far beside the midline each bronchus starts (x r_b)
        self.angle = np.radians([u(18.0, 40.0), u(32.0, 60.0)])
        self.len_main = np.array([u(16.0, 28.0), u(38.0, 52.0)])
        # Heart.
        self.heart_axes = np.array([u(50.0, 66.0), u(40.0, 54.0), u(44.0, 60.0)])
        self.heart_e = u(2.0, 2.8)
        self.heart_rot = np.radians(u(-48.0, -20.0))
        self.heart_dx, self.heart_fy, self.heart_fz = u(8.0, 30.0), u(0.12, 0.35), u(0.55, 0.85)
        self.arch_z = u(14.0, 36.0)
        # Options.
        self.arms = bool(rng.random() < 0.35)
        self.arm_gap, self.arm_r = u(4.0, 28.0), u(32.0, 46.0)
        self.breasts = bool(rng.random() < 0.3)
        self.breast_r = u(35.0, 60.0)
        self.contrast = bool(rng.random() < 0.4)
        self.blood = u(160.0, 340.0) if self.contrast else u(35.0, 50.0)
        self.stomach_gas = bool(rng.random() < 0.6)
        self.rib_pitch, self.rib_drop = u(21.0, 29.0), u(30.0, 62.0)
        self.rib_top = float(self.apex.max()) + u(-8.0, 8.0)
        self.rng = rng
        self.wall_hu = 55.0
        if airway is not None:  # the airway style axis: its wall and angles, the same draws before
            self.t_wall, self.wall_hu = airway.wall_mm, airway.wall_hu
            self.angle = np.radians(np.array(airway.bronchus_angle))
        self._build()

    # ------------------------------------------------------------------ profiles

    def axes(self, z: float) -> tuple[float, float]:
        """Outer half-width and half-depth of the body at ``z``."""
        s = float(smoothstep((z - self.shoulder) / 45.0))
        a = self.a0 * (1 - s) + self.neck[0] * s
        b = self.b0 * (1 - s) + self.neck[1] * s
        t = float(np.clip((self.dome[0] - 20.0 - z) / 80.0, 0.0, 1.0))
        return a * (1 + self.abdomen * t), b * (1 + 0.5 * self.abdomen * t)

    def cavity_axes(self, z: float) -> tuple[float, float]:
        a, b = self.axes(z)
        return max(a - self.fat - self.wall, 10.0), max(b - self.fat - self.wall - 0.5 * self.back, 10.0)

    # ------------------------------------------------------------------ structures

    def _build(self) -> None:
        rng, u = self.rng, self.rng.uniform
        a_c, b_c = self.cavity_axes(0.0)
        self.a_c0, self.b_c0 = a_c, b_c
        cyc = self.cy + self.cav_dy
        self.cyc = cyc
        self.spine = np.array([self.x_mid, cyc + b_c - 0.25 * self.r_vb])
        # Trachea: a gently curved line from the neck to the carina point.
        self.carina_pt = np.array([self.x_mid + u(-6.0, 4.0), self.spine[1] - self.r_vb - u(22.0, 34.0), 0.0])
        top = self.carina_pt + np.array([u(-6.0, 6.0), u(-14.0, -4.0), 260.0])
        mid = 0.5 * (top + self.carina_pt) + np.array([u(-4.0, 4.0), u(-4.0, 4.0), 0.0])
        self.trachea_line = bezier(top, mid, self.carina_pt, 30)
        lumen = self._bronchi()
        self.lumen = lumen
        self.airway_wall = lumen.grown(self.t_wall)
        self.oesophagus_xy = np.array([self.x_mid + u(2.0, 10.0), self.spine[1] - self.r_vb - u(6.0, 12.0)])
        # Heart, sitting on the right dome.
        hc = np.array([self.x_mid + self.heart_dx, cyc - self.heart_fy * b_c,
                       self.dome[0] + self.heart_fz * self.heart_axes[2]])
        self.heart_c = hc
        heart_top = hc[2] + 0.7 * self.heart_axes[2]
        # Aorta: ascending, arch over the left main bronchus, descending beside the spine.
        asc = np.array([self.x_mid + u(-2.0, 10.0), hc[1] + u(5.0, 18.0), heart_top - 15.0])
        desc_x, desc_y = self.spine[0] + u(18.0, 28.0), self.spine[1] - self.r_vb - u(4.0, 12.0)
        arch_pts = np.vstack([
            bezier(asc, asc + [0.0, 0.0, 30.0], [asc[0] + 4, asc[1] + 8, self.arch_z], 12),
            bezier([asc[0] + 4, asc[1] + 8, self.arch_z], [self.x_mid + 10, self.carina_pt[1], self.arch_z + 22.0],
                    [desc_x, desc_y, self.arch_z - 4.0], 16)[1:],
            np.array([[desc_x, desc_y, self.arch_z - 30.0], [desc_x - 6.0, desc_y + 4.0, self.dome[0] - 110.0]]),
        ])
        r_ao = u(11.0, 16.0)
        self.aorta = curve(arch_pts, r_ao, r_ao * 0.8)
        # Superior vena cava, pulmonary trunk and arteries.
        svc_x = asc[0] - r_ao - u(8.0, 14.0)
        self.svc = curve(np.array([[svc_x, asc[1] + 2.0, 90.0], [svc_x, asc[1], heart_top - 10.0]]), u(8.0, 11.0))
        pt0 = np.array([self.x_mid + u(8.0, 20.0), hc[1] - 0.4 * self.heart_axes[1], heart_top - 20.0])
        bif = np.array([self.x_mid + u(2.0, 12.0), self.carina_pt[1] - u(8.0, 16.0), -u(10.0, 22.0)])
        r_pa = u(11.0, 15.0)
        great = curve(np.vstack([pt0, bif]), r_pa)
        self.hila = []
        for sign in (-1.0, 1.0):
            hilum = np.array([self.carina_pt[0] + sign * u(32.0, 46.0), self.carina_pt[1] + u(0.0, 14.0), -u(14.0, 30.0)])
            self.hila.append(hilum)
            great = great + curve(bezier(bif, 0.5 * (bif + hilum) + [0, 0, 8.0], hilum, 12), r_pa * 0.7)
        self.great = great
        self.vessels = self._vessel_tree()
        self.ribs, self.cartilage = self._ribs()

    def _bronchi(self) -> Sweep:
        rng, u = self.rng, self.rng.uniform
        c = self.carina_pt
        sweep = curve(self.trachea_line, self.r_t)
        # The trachea ends flat at the carina: spheres stop one radius above it, and a
        # cylinder fills the last radius down to the carina plane.
        keep = sweep.c[:, 2] >= c[2] + self.r_t
        sweep = Sweep(sweep.c[keep], sweep.r[keep])
        sweep = sweep + Sweep(np.array([c + [0.0, 0.0, 0.5 * self.r_t]]), np.array([self.r_t]),
                               np.array([0.5 * self.r_t + 0.3]))
        for side, sign in enumerate((-1.0, 1.0)):
            ang, length = self.angle[side], self.len_main[side]
            rb = self.r_t * (0.78 if side == 0 else 0.68)
            start = c + np.array([sign * self.spur * rb, u(-1.0, 1.0), -0.15 * rb])
            d = np.array([sign * np.sin(ang), u(0.0, 0.25), -np.cos(ang)])
            d /= np.linalg.norm(d)
            end_pt = start + d * length
            bend = start + d * 0.5 * length + np.array([sign * u(0.0, 4.0), u(-2.0, 2.0), u(-3.0, 0.0)])
            sweep = sweep + curve(bezier(start, bend, end_pt, 16), rb, rb * 0.9)
            # Lobar bronchi: upper lobe bronchus lateral (slightly up or down), the rest down.
            ul_from = start + d * (length * (0.55 if side == 0 else 1.0))
            ul_dir = np.array([sign * 1.0, u(-0.3, 0.2), u(-0.25, 0.12)])
            ul_dir /= np.linalg.norm(ul_dir)
            sweep = sweep + curve(np.vstack([ul_from, ul_from + ul_dir * u(14.0, 24.0)]), rb * 0.62, rb * 0.5)
            lower_dir = np.array([sign * u(0.1, 0.45), u(0.0, 0.4), -1.0])
            lower_dir /= np.linalg.norm(lower_dir)
            lo_end = end_pt + lower_dir * u(28.0, 42.0)
            sweep = sweep + curve(np.vstack([end_pt, lo_end]), rb * 0.75, rb * 0.55)
            for _ in range(2):
                dd = np.array([sign * u(0.2, 0.9), u(-0.6, 0.7), -u(0.4, 1.0)])
                dd /= np.linalg.norm(dd)
                sweep = sweep + curve(np.vstack([lo_end, lo_end + dd * u(15.0, 28.0)]), rb * 0.45, rb * 0.3)
        return sweep

    def _vessel_tree(self) -> Sweep:
        rng, u = self.rng, self.rng.uniform
        out = Sweep.empty()
        for side, sign in enumerate((-1.0, 1.0)):
            hilum = self.hila[side]
            trunks = [
                np.array([sign * 0.4, u(-0.4, 0.2), 1.0]),    # upper
                np.array([sign * 1.0, u(-0.5, 0.3), u(-0.2, 0.2)]),  # middle
                np.array([sign * 0.4, u(0.0, 0.5), -1.0]),    # lower
                np.array([sign * 0.6, u(-0.2, 0.6), -0.7]),
            ]
            stack = [(hilum, d / np.linalg.norm(d), u(4.0, 6.0), 0) for d in trunks]
            while stack:
                p, d, r, gen = stack.pop()
                length = u(14.0, 30.0) * (0.6 + 0.4 * r / 5.0)
                q = p + d * length
                out = out + curve(np.vstack([p, q]), r, r * 0.9)
                if gen < 4 and r > 1.1:
                    for _ in range(2):
                        k = rng.standard_normal(3)
                        k -= k @ d * d
                        k /= max(np.linalg.norm(k), 1e-9)
                        spread = np.radians(u(20.0, 45.0))
                        nd = np.cos(spread) * d + np.sin(spread) * k
                        stack.append((q, nd / np.linalg.norm(nd), r * u(0.68, 0.8), gen + 1))
        return out

    def _ribs(self) -> tuple[Sweep, Sweep]:
        u = self.rng.uniform
        ribs, cart = Sweep.empty(), Sweep.empty()
        r = u(3.5, 5.0)
        for i in range(12):
            z_post = self.rib_top - 6.0 - i * self.rib_pitch
            a_c, b_c = self.cavity_axes(z_post)
            if i == 0:
                a_c, b_c = a_c * 0.75, b_c * 0.8
            for sign in (-1.0, 1.0):
                th = np.radians(np.linspace(95.0, -85.0, 60))
                x = self.cx + sign * (a_c + 0.5 * self.wall) * np.cos(th)
                y = self.cyc + (b_c + 0.5 * self.wall) * np.sin(th)
                z = z_post - self.rib_drop * (1.0 - np.sin(th)) / 2.0 * (0.6 if i == 0 else 1.0)
                pts = np.column_stack([x, y, z])
                bone = th > np.radians(-45.0)
                ribs = ribs + curve(pts[bone], r)
                if i < 10:
                    cart = cart + curve(pts[~bone], r * 0.9)
        return ribs, cart

    # ------------------------------------------------------------------ fields

    def superellipse(self, X, Y, cx, cy, a, b, p) -> np.ndarray:
        return np.abs((X - cx) / a) ** p + np.abs((Y - cy) / b) ** p

    def apex_surface(self, side: int, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        sign = (-1.0, 1.0)[side]
        fx, fy = self.apex_xy[side]
        ax, ay = self.cx + sign * fx * self.a_c0, self.cyc + fy * self.b_c0
        rho = np.sqrt((X - ax) ** 2 + (0.8 * (Y - ay)) ** 2)
        k = self.apex_drop60[side] / 60.0 ** self.apex_q[side]
        return self.apex[side] - k * rho ** self.apex_q[side]

    def dome_surface(self, side: int, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        sign = (-1.0, 1.0)[side]
        fx, fy = self.dome_c[side]
        dx = X - (self.cx + sign * fx * self.a_c0)
        dy = Y - (self.cyc + fy * self.b_c0)
        sx, sy = self.dome_s[side] * np.array([self.a_c0, self.b_c0])
        g = np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2))
        return self.dome[side] - self.dome_h[side] * (1.0 - g) - self.dome_tilt[side] * np.maximum(dy, 0.0)

    def heart(self, X, Y, z: float) -> np.ndarray:
        a, b, c = self.heart_axes
        wz = abs((z - self.heart_c[2]) / c) ** self.heart_e
        if wz >= 1.0:
            return np.zeros(X.shape, dtype=bool)
        ca, sa = np.cos(self.heart_rot), np.sin(self.heart_rot)
        dx, dy = X - self.heart_c[0], Y - self.heart_c[1]
        uu = (dx * ca + dy * sa) / a
        vv = (-dx * sa + dy * ca) / b
        return np.abs(uu) ** self.heart_e + np.abs(vv) ** self.heart_e < 1.0 - wz
