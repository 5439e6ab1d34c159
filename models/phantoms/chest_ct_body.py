"""The family-A chest CT patient placed in scanner coordinates: renders its sub-slices and
finds where its airway divides."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.phantoms.chest_ct_anatomy import (
    FAT_HU,
    LUNG_HU,
    MUSCLE_HU,
    SOFT_HU,
    Anatomy,
    Tube,
    polyline,
)
from models.phantoms.chest_ct_truth import MIN_LUMEN_AREA_MM2

__all__ = ["SUBSLICES", "Body"]

SUBSLICES = (-1.0 / 3.0, 0.0, 1.0 / 3.0)
"""Sub-slice offsets, in slice thicknesses, that each slice averages."""


class Body:
    """Geometry of one patient placed in scanner coordinates; renders sub-slices."""

    def __init__(self, a: Anatomy, rng: np.random.Generator, X: np.ndarray, Y: np.ndarray, spacing: float) -> None:
        self.a, self.X, self.Y, self.spacing = a, X, Y, spacing
        cx, cy = a.centre
        inner = a.axes - a.fat - a.muscle - a.wall
        self.inner = inner
        self.spine = np.array([cx, cy + a.axes[1] - a.fat - a.muscle - 40.0])
        a.spine_y = float(self.spine[1])
        self.trachea_xy = np.array([cx + rng.uniform(-4, 4), self.spine[1] - 44.0])
        hx, hy = cx + a.heart[0], cy - 0.28 * inner[1]
        self.heart_centre = np.array([hx, hy, a.dome[0] + a.heart[5] * 0.75])
        self.heart_axes = a.heart[3:6]
        self.heart_angle = float(a.heart[6])
        # Lungs: footprint ellipses per side (0 right = -x, 1 left = +x).
        self.lungs = []
        for side, sign in enumerate((-1.0, 1.0)):
            wscale, dscale, gap = a.lung_shape[side]
            ax = 0.5 * inner[0] * wscale - gap * 0.5
            ay = inner[1] * dscale
            centre = np.array([cx + sign * (0.5 * inner[0] + gap * 0.5 + 6.0), cy + 0.05 * inner[1]])
            apex_xy = np.array([cx + sign * 0.5 * inner[0], cy + 0.25 * inner[1]])
            self.lungs.append((sign, centre, np.array([ax, ay]), apex_xy))
        lumen, walls, self.divided_airways = self._airways(rng)
        self.airways = (lumen, walls)
        self.vessels = self._vessels(rng)
        self.aorta = self._aorta()
        self.rib_phase = rng.uniform(0.0, 1.0)
        self.rib_pitch = rng.uniform(24.0, 30.0)
        self.rib_drop = rng.uniform(35.0, 55.0)
        self.texture_seed = int(rng.integers(0, 2**31 - 1))
        self.stomach = np.array([cx + 0.45 * inner[0], cy - 0.1 * inner[1], a.dome[1] - 45.0])
        self._cache: dict[object, dict[str, np.ndarray] | np.ndarray] = {}
        self._dome = [self._dome_z(0, X, Y), self._dome_z(1, X, Y)]
        ang = np.arctan2(Y - cy, X - cx)
        self._rib_lift = (self.rib_drop * (1.0 + np.sin(ang)) / 2.0).astype(np.float32)

    # ----------------------------------------------------------------- structures

    def _airways(self, rng: np.random.Generator) -> tuple[list[Tube], list[Tube], list[Tube]]:
        """(lumen tubes, wall tubes) of trachea, main and lobar bronchi, and the lumen tubes
        of the trachea and the two main bronchi alone (where the trachea divides)."""
        a = self.a
        tx, ty = self.trachea_xy
        r = a.trachea_r
        lumen = polyline([(tx, ty, 400.0), (tx, ty, 0.0)], r)
        divided = list(lumen)
        for side, sign in enumerate((-1.0, 1.0)):
            ang, length = a.bronchus_angle[side], a.bronchus_len[side]
            rb = r * (0.8 if side == 0 else 0.7)
            end = np.array([tx + sign * length * np.sin(ang), ty + 6.0, -length * np.cos(ang)])
            start = np.array([tx + sign * a.spur * rb, ty, -0.2 * a.spur * rb])
            lumen.append(Tube(start, end, rb))
            divided.append(lumen[-1])
            for k in range(2):
                d = np.array([sign * rng.uniform(0.3, 0.9), rng.uniform(-0.6, 0.6), rng.choice([-1.0, 0.6]) * rng.uniform(0.6, 1.0)])
                d /= np.linalg.norm(d)
                lumen.append(Tube(end, end + d * rng.uniform(25.0, 40.0), rb * 0.6))
        walls = [Tube(t.p0, t.p1, t.r + a.airway_wall) for t in lumen]
        return lumen, walls, divided

    def _vessels(self, rng: np.random.Generator) -> list[Tube]:
        """A three-generation vessel tree from each hilum to random points in the lung."""
        tubes: list[Tube] = []
        tx, ty = self.trachea_xy
        for side, (sign, centre, axes, _) in enumerate(self.lungs):
            hilum = np.array([tx + sign * 38.0, ty + 8.0, -18.0])
            z_top, z_bot = self.a.apex[side] - 10.0, self.a.dome[side] - 20.0
            targets = []
            while len(targets) < 36:
                p = np.array([
                    centre[0] + rng.uniform(-1, 1) * axes[0] * 0.9,
                    centre[1] + rng.uniform(-1, 1) * axes[1] * 0.9,
                    rng.uniform(z_bot, z_top),
                ])
                if self._lung_at(side, p[0:1], p[1:2], p[2])[0]:
                    targets.append(p)
            for g1 in range(6):
                group = targets[g1 * 6:(g1 + 1) * 6]
                mid1 = hilum + 0.35 * (np.mean(group, axis=0) - hilum)
                tubes.append(Tube(hilum, mid1, rng.uniform(4.0, 5.5)))
                for g2 in range(3):
                    pair = group[g2 * 2:(g2 + 1) * 2]
                    mid2 = mid1 + 0.5 * (np.mean(pair, axis=0) - mid1)
                    tubes.append(Tube(mid1, mid2, rng.uniform(2.4, 3.2)))
                    for p in pair:
                        tubes.append(Tube(mid2, p, rng.uniform(1.2, 1.9)))
        return tubes

    def _aorta(self) -> list[Tube]:
        a = self.a
        hx, hy, hz = self.heart_centre
        top = hz + self.heart_axes[2] * 0.6
        dx = self.spine[0] + 22.0
        dy = self.spine[1] - 24.0
        asc_x = self.a.centre[0] + 4.0
        pts = [
            (asc_x, hy + 10.0, top - 10.0),
            (asc_x, hy + 12.0, a.aorta_arch_z - 10.0),
            (asc_x + 6.0, hy + 22.0, a.aorta_arch_z + 2.0),
            (dx - 6.0, dy - 22.0, a.aorta_arch_z + 4.0),
            (dx, dy - 4.0, a.aorta_arch_z - 6.0),
            (dx, dy, a.aorta_arch_z - 30.0),
            (dx - 8.0, dy + 2.0, a.dome[0] - 120.0),
        ]
        return polyline(pts[:3], 15.0) + polyline(pts[2:], 12.0)

    # ----------------------------------------------------------------- fields

    def _lung_at(self, side: int, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Lung (before mediastinal exclusions and the dome) of ``side`` at height ``z``."""
        sign, centre, axes, apex_xy = self.lungs[side]
        depth = self.a.apex[side] - z
        if depth <= 0:
            return np.zeros(np.shape(x), dtype=bool)
        s = min(1.0, float(np.sqrt(depth / self.a.apex_sharpness[side])))
        c = apex_xy + (centre - apex_xy) * s
        inside = ((x - c[0]) / (axes[0] * s)) ** 2 + ((y - c[1]) / (axes[1] * s)) ** 2 < 1.0
        inner = self._cavity(x, y, self._neck_scale(z))
        return inside & inner & (sign * (x - self.a.centre[0]) > 0)

    def _dome_z(self, side: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sign, centre, axes, _ = self.lungs[side]
        dc = centre + self.a.dome_centre[side]
        k = self.a.dome_drop[side] / axes[0] ** 2
        return self.a.dome[side] - k * ((x - dc[0]) ** 2 + 0.7 * (y - dc[1]) ** 2)

    def _neck_scale(self, z: float) -> float:
        top = float(self.a.apex.max())
        return float(np.clip(1.0 - (z - top + 5.0) / 45.0 * 0.45, 0.55, 1.0))

    def _cavity(self, x: np.ndarray, y: np.ndarray, s: float) -> np.ndarray:
        cx, cy = self.a.centre
        return ((x - cx) / (self.inner[0] * s)) ** 2 + ((y - cy) / (self.inner[1] * (0.5 + 0.5 * s))) ** 2 < 1.0

    def _tubes(self, tubes: list[Tube], z: float) -> np.ndarray:
        """Union of the capsules' cross-sections at height ``z``."""
        X, Y, sp = self.X, self.Y, self.spacing
        out = np.zeros(X.shape, dtype=bool)
        x0, y0 = float(X[0, 0]), float(Y[0, 0])
        n_r, n_c = X.shape
        for t in tubes:
            zlo, zhi = min(t.p0[2], t.p1[2]) - t.r, max(t.p0[2], t.p1[2]) + t.r
            if not zlo <= z <= zhi:
                continue
            d = t.p1 - t.p0
            dz = d[2]
            if abs(dz) > 1e-6:
                ta = np.clip(((z - t.r) - t.p0[2]) / dz, 0, 1)
                tb = np.clip(((z + t.r) - t.p0[2]) / dz, 0, 1)
                lo, hi = min(ta, tb), max(ta, tb)
            else:
                lo, hi = 0.0, 1.0
            pa, pb = t.p0 + lo * d, t.p0 + hi * d
            bx0, bx1 = min(pa[0], pb[0]) - t.r, max(pa[0], pb[0]) + t.r
            by0, by1 = min(pa[1], pb[1]) - t.r, max(pa[1], pb[1]) + t.r
            c0, c1 = max(0, int((bx0 - x0) / sp)), min(n_c, int((bx1 - x0) / sp) + 2)
            r0, r1 = max(0, int((by0 - y0) / sp)), min(n_r, int((by1 - y0) / sp) + 2)
            if c0 >= c1 or r0 >= r1:
                continue
            px, py = X[r0:r1, c0:c1], Y[r0:r1, c0:c1]
            vx, vy, vz = px - t.p0[0], py - t.p0[1], z - t.p0[2]
            dd = float(d @ d)
            u = np.clip((vx * d[0] + vy * d[1] + vz * d[2]) / dd, 0.0, 1.0) if dd > 0 else 0.0
            dist2 = (vx - u * d[0]) ** 2 + (vy - u * d[1]) ** 2 + (vz - u * d[2]) ** 2
            out[r0:r1, c0:c1] |= dist2 < t.r * t.r
        return out

    def _static(self, s: float) -> dict[str, np.ndarray]:
        """Masks that depend on z only through the neck scale ``s`` (cached)."""
        key = round(s, 3)
        if key in self._cache:
            return self._cache[key]
        a, X, Y = self.a, self.X, self.Y
        cx, cy = a.centre
        sx, sy = self.spine
        ax, ay = a.axes[0] * s, a.axes[1] * (0.55 + 0.45 * s)
        r_body = ((X - cx) / ax) ** 2 + ((Y - cy) / ay) ** 2
        fat_scale = 1.0 - (a.fat / np.mean(a.axes))
        cavity = self._cavity(X, Y, s)
        muscle = ((X - cx) / (ax * fat_scale)) ** 2 + ((Y - cy) / (ay * fat_scale)) ** 2 < 1.0
        rib_band = ~cavity & muscle & (
            ((X - cx) / (self.inner[0] * s + a.wall)) ** 2
            + ((Y - cy) / (self.inner[1] * (0.5 + 0.5 * s) + a.wall)) ** 2 < 1.0
        )
        d_vb = (X - sx) ** 2 + (Y - sy) ** 2
        out = {
            "body": r_body < 1.0,
            "muscle": muscle,
            "skin": (r_body < 1.0) & (r_body > (1.0 - 2.5 / np.mean(a.axes)) ** 2),
            "cavity": cavity,
            "med": cavity & (((X - cx) / (36.0 * s)) ** 2 + ((Y - sy + 40.0) / 45.0) ** 2 < 1.0),
            "rib_band": rib_band,
            "sternum": (((X - cx) / 18.0) ** 2 + ((Y - (cy - self.inner[1] * (0.5 + 0.5 * s) - a.wall * 0.5)) / 7.0) ** 2 < 1.0)
            & (r_body < 1.0),
            "vb": d_vb < 17.0**2,
            "cortex": (d_vb < 17.0**2) & (d_vb > 14.5**2),
            "post": ((((X - sx) / 26.0) ** 2 + ((Y - sy - 38.0) / 9.0) ** 2 < 1.0)
                     | ((np.abs(X - sx) < 4.0) & (Y > sy + 38.0) & (Y < sy + 58.0))) & (r_body < 1.0),
            "canal": ((X - sx) ** 2 + (Y - sy - 27.0) ** 2) < 8.5**2,
            "oesophagus": ((X - sx - 6.0) ** 2 + (Y - sy + 24.0) ** 2) < 8.0**2,
            "spine_keep": d_vb < 22.0**2,
        }
        self._cache[key] = out
        return out

    def _lung_mask(self, side: int, z: float, s: float) -> np.ndarray:
        """Lung of ``side`` at ``z`` before the dome, on the image grid (cached by shape)."""
        depth = self.a.apex[side] - z
        if depth <= 0:
            return np.zeros(self.X.shape, dtype=bool)
        k = min(1.0, float(np.sqrt(depth / self.a.apex_sharpness[side])))
        key = (side, round(k, 3), round(s, 3), z > self.a.dome[0] + 30)
        if key not in self._cache:
            X, Y = self.X, self.Y
            lung = self._lung_at(side, X, Y, z)
            st = self._static(s)
            lung &= ~st["oesophagus"] & ~st["spine_keep"]
            lung &= ~(np.abs(X - self.a.centre[0] - (6.0 if key[3] else 12.0)) < 26.0 * s)
            self._cache[key] = lung
        return self._cache[key]

    def render(self, z: float, texture: np.ndarray) -> tuple[np.ndarray, float, float]:
        """HU of one sub-slice at ``z`` and its visible lung and dome areas (mm²)."""
        a, X, Y = self.a, self.X, self.Y
        cx = a.centre[0]
        s = self._neck_scale(z)
        st = self._static(s)
        hu = np.full(X.shape, -1000.0, dtype=np.float32)
        hu[st["body"]] = FAT_HU
        m = st["muscle"]
        hu[m] = MUSCLE_HU + 6.0 * texture[m]
        hu[st["skin"]] = 30.0
        cavity = st["cavity"]
        hu[cavity] = SOFT_HU + 8.0 * texture[cavity]
        med = st["med"]
        hu[med] = -70.0 + 20.0 * texture[med]

        # Ribs: oblique rings just outside the cavity, higher posteriorly.
        if a.dome[1] - 110.0 < z < a.apex.max() + 12.0:
            band = st["rib_band"]
            phase = ((z - self._rib_lift[band]) / self.rib_pitch + self.rib_phase) % 1.0
            rib = phase < 0.32
            vals = np.where(np.abs(phase - 0.16) > 0.11, 720.0, 420.0).astype(np.float32)
            sub = hu[band]
            sub[rib] = vals[rib]
            hu[band] = sub
        if a.dome[0] - 40.0 < z < a.aorta_arch_z + 30.0:
            hu[st["sternum"]] = 380.0

        # Spine.
        vb = st["vb"]
        hu[vb] = 260.0 + 25.0 * texture[vb]
        hu[st["cortex"]] = 750.0
        hu[st["post"]] = 650.0
        hu[st["canal"]] = 12.0

        # Lungs with the diaphragm domes.
        lung_total = np.zeros(X.shape, dtype=bool)
        dome_area = 0.0
        heart = self._heart(z)
        aorta = self._tubes(self.aorta, z)
        below = [z < self._dome[0], z < self._dome[1]]
        for side in (0, 1):
            lung = self._lung_mask(side, z, s) & ~heart & ~aorta
            under = lung & below[side]
            dome_area = max(dome_area, float(np.count_nonzero(under)) * self.spacing**2)
            lung_total |= lung & ~below[side]
        # Abdomen under the domes: liver right, spleen and stomach left.
        if z < a.dome[0] + 1.0:
            below_r = cavity & below[0] & ~lung_total & (X <= cx + 20.0)
            below_l = cavity & below[1] & ~lung_total & (X > cx)
            hu[below_r] = a.liver + 6.0 * texture[below_r]
            hu[below_l] = a.spleen + 6.0 * texture[below_l]
            if a.stomach_gas:
                sx_, sy_, sz_ = self.stomach
                gas = below_l & (((X - sx_) ** 2 + (Y - sy_) ** 2 + 2.0 * (z - sz_) ** 2) < 22.0**2) & (Y < sy_)
                hu[gas] = -950.0
        hu[lung_total] = LUNG_HU + 25.0 * texture[lung_total]
        if a.fibrosis and z < -30.0 and lung_total.any():
            edge = ndimage.distance_transform_edt(lung_total) * self.spacing
            ret = lung_total & (edge < 14.0) & (texture > 0.35)
            hu[ret] = -480.0 + 120.0 * texture[ret]

        # Vessels inside the lungs; heart and aorta.
        vess = self._tubes(self.vessels, z) & lung_total
        hu[vess] = a.blood
        hc = heart & cavity
        hu[hc] = a.blood + 4.0 * texture[hc]
        hu[aorta & cavity] = a.blood
        if z > a.dome[1] - 10.0:
            hu[st["oesophagus"] & cavity] = 40.0

        # Airways: wall then lumen.
        lumen_tubes, wall_tubes = self.airways
        hu[self._tubes(wall_tubes, z) & cavity] = a.airway_wall_hu
        hu[self._tubes(lumen_tubes, z) & cavity] = -1000.0
        return hu, float(np.count_nonzero(lung_total)) * self.spacing**2, dome_area

    def _heart(self, z: float) -> np.ndarray:
        hx, hy, hz = self.heart_centre
        a, b, c = self.heart_axes
        qz = ((z - hz) / c) ** 2
        if qz >= 1.0:
            return np.zeros(self.X.shape, dtype=bool)
        ca, sa = np.cos(self.heart_angle), np.sin(self.heart_angle)
        dx, dy = self.X - hx, self.Y - hy
        u = (dx * ca + dy * sa) / a
        v = (-dx * sa + dy * ca) / b
        return u * u + v * v < 1.0 - qz

    def _airway_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """A 0.4 mm grid of +-40 mm around the trachea, for the airway measurements."""
        tx, ty = self.trachea_xy
        g = np.arange(-40.0, 40.0, 0.4)
        return np.meshgrid(tx + g, ty + g)

    def _lumen_on(self, gx: np.ndarray, gy: np.ndarray, z: float) -> np.ndarray:
        saved = self.X, self.Y, self.spacing
        self.X, self.Y, self.spacing = gx, gy, 0.4
        try:
            return self._tubes(self.divided_airways, z)
        finally:
            self.X, self.Y, self.spacing = saved

    def carina_z(self) -> float:
        """Highest z at which the airway lumen is two separate lumens (0.25 mm steps)."""
        gx, gy = self._airway_grid()
        for z in np.arange(0.0, -60.0, -0.25):
            if ndimage.label(self._lumen_on(gx, gy, float(z)))[1] >= 2:
                return float(z)
        raise RuntimeError("the main bronchi never separate")

    def divided_slices(self, zs: np.ndarray, thickness: float, heights: np.ndarray | None = None) -> np.ndarray:
        """Per slice: whether the slab-averaged airway lumen shows two or more lumens.

        The lumen of a slice is where more than half of its sub-slices are lumen; lumens
        smaller than :data:`MIN_LUMEN_AREA_MM2` are not counted. ``heights`` (``(n, k)``)
        gives the sub-slice heights the image was rendered at (the airway style's); by
        default the :data:`SUBSLICES` of ``thickness`` around each of ``zs``.
        """
        if heights is None:
            heights = np.asarray(zs)[:, None] + np.array(SUBSLICES)[None, :] * thickness
        gx, gy = self._airway_grid()
        min_px = MIN_LUMEN_AREA_MM2 / 0.4**2
        out = np.zeros(len(heights), dtype=bool)
        for i, row in enumerate(heights):
            z = float(np.mean(row))
            if z > 20.0 or z < -60.0:
                continue
            frac = sum(self._lumen_on(gx, gy, float(h)).astype(np.float32) for h in row)
            labels, count = ndimage.label(frac > len(row) / 2.0)
            if count >= 2:
                sizes = ndimage.sum_labels(np.ones_like(frac), labels, index=np.arange(1, count + 1))
                out[i] = int(np.sum(sizes >= min_px)) >= 2
        return out
