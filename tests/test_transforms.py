"""The transforms (training/transforms.py, depth_transforms.py, seg_transforms.py) against hand-computed values and independent reference formulas."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from mdeaux.params import parse
from mdeaux.training import depth_transforms as D
from mdeaux.training import seg_transforms as S
from mdeaux.training import transforms as T

ROOT = Path(__file__).resolve().parents[1]
# the paper profile's resolved recipes: the toolbox NYU and KITTI pipelines, mmseg's ADE20K pipeline
RECIPES = parse({**yaml.safe_load((ROOT / "params.yaml").read_text()), "profile": "paper"}).augment


def _positional(h, w):
    """Image whose pixels encode their position: R = row % 256, G = col % 256, B = (row // 256) * 16."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([ys % 256, xs % 256, (ys // 256) * 16 + (xs // 256)], axis=-1).astype(np.uint8)


def _depth_positional(h, w):
    ys, xs = np.mgrid[0:h, 0:w]
    return (1.0 + ys * 1000 + xs).astype(np.float32)  # unique value per pixel, exact in float32


def _cv2_rotate_nearest_reference(d, angle):
    """Independent reference: cv2.getRotationMatrix2D(centre, -angle) + warpAffine nearest, border 0."""
    h, w = d.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a, b = math.cos(math.radians(-angle)), math.sin(math.radians(-angle))
    m = np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy], [0, 0, 1]])
    ys, xs = np.mgrid[0:h, 0:w]
    src = np.linalg.inv(m) @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    sx, sy = np.floor(src[0] + 0.5).astype(int), np.floor(src[1] + 0.5).astype(int)
    ok = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = np.zeros(h * w, np.float32)
    out[ok] = d[sy[ok], sx[ok]]
    return out.reshape(h, w)


# ---------------------------------------------------------------------------------------------- normalize
def test_normalize_known_values_and_inverse():
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 1] = (255, 0, 128)
    x = T.normalize(img)
    assert x.shape == (3, 1, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375], rtol=1e-6)
    np.testing.assert_allclose(x[:, 0, 1], [131.325 / 58.395, -116.28 / 57.12, 24.47 / 57.375], rtol=1e-5)
    np.testing.assert_allclose(T.denormalize(x), img.astype(np.float32), atol=1e-4)
    assert np.array_equal(T.denormalize(x, to_uint8=True), img)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        T.normalize(np.zeros((2, 2)))


# ---------------------------------------------------------------------------------------------- depth pipeline
def test_nyu_crop_shape_and_pixel_correspondence():
    img, depth = _positional(480, 640), _depth_positional(480, 640)
    ci, cd = D.nyu_crop(img, depth)
    assert ci.shape == (427, 565, 3) and cd.shape == (427, 565)
    assert tuple(ci[0, 0]) == (45, 43, 0)  # crop starts at row 45, col 43
    assert tuple(ci[-1, -1]) == (471 % 256, 607 % 256, 16 * 1 + 2)  # last row 471, last col 607
    assert cd[0, 0] == 1 + 45 * 1000 + 43 and cd[-1, -1] == 1 + 471 * 1000 + 607
    assert cd[10, 20] == 1 + 55 * 1000 + 63  # image and depth windows are the same
    with pytest.raises(ValueError, match="472x608"):
        D.nyu_crop(np.zeros((400, 640, 3), np.uint8), None)


def test_kb_crop_bottom_centre():
    img, depth = _positional(375, 1242), _depth_positional(375, 1242)
    ci, cd = D.kb_crop(img, depth)
    assert ci.shape == (352, 1216, 3) and cd.shape == (352, 1216)
    # top = 375 - 352 = 23, left = int((1242 - 1216) / 2) = 13
    assert cd[0, 0] == 1 + 23 * 1000 + 13 and cd[-1, -1] == 1 + 374 * 1000 + 1228
    assert ci[0, 0, 0] == 23 and ci[0, 0, 1] == 13


def test_rotate_zero_is_identity():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (21, 30, 3)).astype(np.uint8)
    depth = rng.uniform(0.5, 9, (21, 30)).astype(np.float32)
    ri, rd = D.rotate(img, depth, 0.0)
    assert np.array_equal(ri, img) and np.array_equal(rd, depth)
    # random_rotate with degree 0 draws angle 0 -> identity too
    ri, rd = D.random_rotate(img, depth, rng, prob=1.0, degree=0.0)
    assert np.array_equal(ri, img) and np.array_equal(rd, depth)


def test_rotate_direction_is_clockwise_like_mmcv():
    depth = np.zeros((5, 5), np.float32)
    depth[2, 3:] = 7.0  # bar from the centre to the right
    img = np.zeros((5, 5, 3), np.uint8)
    img[2, 3:] = 200
    ri, rd = D.rotate(img, depth, 90.0)  # mmcv.imrotate: positive = clockwise -> bar points down
    expected = np.zeros((5, 5), np.float32)
    expected[3:, 2] = 7.0
    assert np.array_equal(rd, expected)
    assert np.all(ri[3:, 2] == 200) and ri[2, 3:].max() == 0
    _, rd = D.rotate(img, depth, -90.0)  # counter-clockwise -> bar points up
    expected = np.zeros((5, 5), np.float32)
    expected[:2, 2] = 7.0
    assert np.array_equal(rd, expected)


@pytest.mark.parametrize("angle", [30.0, -17.3])
def test_rotate_depth_matches_cv2_nearest_reference(angle):
    depth = np.random.default_rng(1).uniform(1, 10, (37, 51)).astype(np.float32)
    _, rd = D.rotate(np.zeros((37, 51, 3), np.uint8), depth, angle)
    assert np.array_equal(rd, _cv2_rotate_nearest_reference(depth, angle))


def test_random_rotate_depth_values_are_original_or_zero():
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 9.5, (60, 80)).astype(np.float32)
    img = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    _, rd = D.random_rotate(img, depth, rng, prob=1.0, degree=2.5)
    assert rd.dtype == np.float32 and rd.shape == depth.shape
    assert set(np.unique(rd)) <= set(np.unique(depth)) | {0.0}  # nearest: no interpolated depths
    assert (rd == 0).any() and not np.array_equal(rd, depth)  # it did rotate, leaving a 0 border


def test_random_rotate_prob_zero_still_draws_angle():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    img, depth = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32)
    out = D.random_rotate(img, depth, rng_a, prob=0.0, degree=2.5)
    assert out[0] is img and out[1] is depth
    rng_b.random(), rng_b.uniform(-2.5, 2.5)  # toolbox: rand() then uniform() regardless
    assert rng_a.random() == rng_b.random()


def test_flip():
    img, depth = _positional(3, 4), _depth_positional(3, 4)
    fi, fd = T.hflip(img, depth)
    assert np.array_equal(fd[:, 0], depth[:, 3]) and np.array_equal(fi[:, 0], img[:, 3])
    fi, fd = T.random_flip(img, depth, np.random.default_rng(0), prob=1.0)
    assert np.array_equal(fd, depth[:, ::-1])
    fi, fd = T.random_flip(img, depth, np.random.default_rng(0), prob=0.0)
    assert np.array_equal(fd, depth) and np.array_equal(fi, img)


def test_random_crop_size_and_correspondence():
    img, depth = _positional(427, 565), _depth_positional(427, 565)
    rng = np.random.default_rng(7)
    ci, cd = D.random_crop(img, depth, rng, (416, 544))
    assert ci.shape == (416, 544, 3) and cd.shape == (416, 544)
    top, left = int(ci[0, 0, 0]), int(ci[0, 0, 1])
    assert 0 <= top <= 11 and 0 <= left <= 21
    assert cd[0, 0] == 1 + top * 1000 + left and cd[5, 9] == 1 + (top + 5) * 1000 + left + 9
    ref = np.random.default_rng(7)
    assert (top, left) == (ref.integers(0, 12), ref.integers(0, 22))  # randint(0, margin + 1)
    with pytest.raises(ValueError, match="larger than the image"):
        D.random_crop(img, depth, rng, (500, 544))


def test_color_aug_identity_and_clipping():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    out = D.color_aug(img, rng, prob=1.0, gamma_range=(1, 1), brightness_range=(1, 1), color_range=(1, 1))
    assert out.dtype == np.float32 and np.array_equal(out, img.astype(np.float32))
    img = np.array([[[250, 100, 10]]], np.uint8)
    out = D.color_aug(img, rng, 1.0, gamma_range=(1, 1), brightness_range=(1.25, 1.25), color_range=(1, 1))
    np.testing.assert_allclose(out[0, 0], [255.0, 125.0, 12.5])  # 250 * 1.25 = 312.5 clipped to 255
    # gamma first, then brightness, then colour, on 0-255 values: 10**2 * 0.5 * 2 = 100
    out = D.color_aug(img, rng, 1.0, gamma_range=(2, 2), brightness_range=(0.5, 0.5), color_range=(2, 2))
    np.testing.assert_allclose(out[0, 0], [255.0, 255.0, 100.0])
    assert D.color_aug(img, rng, 0.0, (0.9, 1.1), (0.75, 1.25), (0.9, 1.1)) is img


def test_depth_train_transform_shapes_and_reproducibility():
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    depth = rng.uniform(0.5, 9.0, (480, 640)).astype(np.float32)
    t = D.DepthTrainTransform(RECIPES["nyuv2"])
    for seed in range(3):
        i1, d1 = t(img, depth, np.random.default_rng(seed))
        i2, d2 = t(img, depth, np.random.default_rng(seed))
        assert i1.shape == (416, 544, 3) and i1.dtype == np.uint8
        assert d1.shape == (416, 544) and d1.dtype == np.float32
        assert np.array_equal(i1, i2) and np.array_equal(d1, d2)
    kitti = D.DepthTrainTransform(RECIPES["kitti"])
    ki, kd = kitti(
        np.zeros((375, 1242, 3), np.uint8), np.ones((375, 1242), np.float32), np.random.default_rng(0)
    )
    assert ki.shape == (352, 704, 3) and kd.shape == (352, 704)
    with pytest.raises(ValueError, match="exclusive"):
        D.DepthTrainTransform(RECIPES["nyuv2"].model_copy(update={"kb_crop": True}))
    with pytest.raises(ValueError, match="float32"):
        t(img, depth.astype(np.float64), rng)


def test_depth_train_transform_no_aug_is_plain_crop():
    img, depth = _positional(480, 640), _depth_positional(480, 640)
    t = D.DepthTrainTransform(RECIPES["nyuv2"].model_copy(update={"rotate_prob": 0, "flip_prob": 0, "color_prob": 0}))
    ci, cd = t(img, depth, np.random.default_rng(4))
    top, left = int(ci[0, 0, 0]) - 45, int(ci[0, 0, 1]) - 43  # offsets inside the NYU crop
    assert 0 <= top <= 11 and 0 <= left <= 21
    assert cd[0, 0] == 1 + (45 + top) * 1000 + 43 + left


def test_mini_view_scale_runs_the_pipeline_at_a_quarter_of_the_resolution():
    """params.yaml view_scale: after NYUCrop (427x565) the view is scaled to 107x141 (image bilinear, depth
    nearest), and the 104x136 crop then covers as much of the frame as the paper's 416x544 does of 427x565."""
    mini = parse(yaml.safe_load((ROOT / "params.yaml").read_text())).augment["nyuv2"]
    assert mini.view_scale == 0.25 and mini.crop_size == [104, 136]
    img, depth = _positional(480, 640), _depth_positional(480, 640)
    t = D.DepthTrainTransform(mini.model_copy(update={"rotate_prob": 0, "flip_prob": 0, "color_prob": 0}))
    ci, cd = t(img, depth, np.random.default_rng(4))
    assert ci.shape == (104, 136, 3) and cd.shape == (104, 136)
    rows, cols = (cd.astype(np.int64) - 1) // 1000, (cd.astype(np.int64) - 1) % 1000
    assert set(np.diff(cols[0]).tolist()) <= {4, 5} and set(np.diff(rows[:, 0]).tolist()) <= {3, 4, 5}
    assert 45 <= rows.min() and rows.max() < 472 and 43 <= cols.min() and cols.max() < 608  # inside NYUCrop's box
    assert cols[0, -1] - cols[0, 0] > 530 and rows[-1, 0] - rows[0, 0] > 400  # most of the frame, as 416x544 of 427x565
    away = (cols % 256 > 4) & (cols % 256 < 251)  # G = col % 256: bilinear blends across its wrap-around
    assert np.abs(ci[..., 1].astype(int) - cols % 256)[away].max() <= 3  # the image follows the depth (bilinear vs nearest)


# ---------------------------------------------------------------------------------------------- resize
def test_resize_bilinear_matches_cv2_hand_values():
    # cv2.resize([[0, 100]], (4, 1), INTER_LINEAR): src x = (dx + 0.5) / 2 - 0.5 -> -0.25, 0.25, 0.75, 1.25
    out = T.resize_bilinear_u8(np.array([[0, 100]], np.uint8), (4, 1))
    assert out.tolist() == [[0, 25, 75, 100]]
    # exact 2x downscale = 2x2 mean, (sum + 2) >> 2
    src = np.array([[0, 10, 20, 21], [1, 11, 30, 30]], np.uint8)
    assert T.resize_bilinear_u8(src, (2, 1)).tolist() == [[(0 + 10 + 1 + 11 + 2) // 4, (20 + 21 + 30 + 30 + 2) // 4]]
    # constant image stays constant at any size
    const = np.full((7, 9, 3), 77, np.uint8)
    assert np.all(T.resize_bilinear_u8(const, (13, 4)) == 77)


def test_resize_nearest_matches_cv2_hand_values():
    row = np.arange(4, dtype=np.uint8)[None]
    assert T.resize_nearest(row, (2, 1)).tolist() == [[0, 2]]  # floor(dx * 4 / 2)
    assert T.resize_nearest(np.arange(2, dtype=np.uint8)[None], (4, 1)).tolist() == [[0, 0, 1, 1]]
    assert T.resize_nearest(np.arange(3, dtype=np.uint8)[None], (2, 1)).tolist() == [[0, 1]]


def test_mmseg_resize_sizes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (512, 683, 3)).astype(np.uint8)
    label = rng.choice(np.array([0, 3, 7, 255], np.uint8), size=(512, 683))
    # ratio 1: scale (2048, 512); factor = min(2048 / 683, 512 / 512) = 1 -> unchanged
    ri, rl = S.mmseg_resize(img, label, rng, (2048, 512), (1.0, 1.0))
    assert ri.shape == (512, 683, 3) and np.array_equal(ri, img) and np.array_equal(rl, label)
    # ratio 0.5: scale (1024, 256); factor = min(1024 / 683, 256 / 512) = 0.5 -> (int(341.5 + 0.5), 256)
    ri, rl = S.mmseg_resize(img, label, rng, (2048, 512), (0.5, 0.5))
    assert ri.shape == (256, 342, 3) and rl.shape == (256, 342)
    assert set(np.unique(rl)) <= {0, 3, 7, 255}  # nearest keeps label values
    # small wide image: factor = min(2048 / 100, 512 / 50) = 10.24 -> (1024, 512)
    ri, rl = S.mmseg_resize(np.zeros((50, 100, 3), np.uint8), np.zeros((50, 100), np.uint8), rng, (2048, 512), (1, 1))
    assert ri.shape == (512, 1024, 3) and rl.shape == (512, 1024)
    assert S.rescale_size(683, 512, (2048, 512)) == (683, 512)


# ---------------------------------------------------------------------------------------------- crop / pad
def _cat_crop_setup():
    label = np.zeros((8, 8), np.uint8)
    label[:3, :3] = 1  # corner of class 1; 4x4 crops pass (< 0.75) only at offsets (0,0), (0,1), (1,0)
    return _positional(8, 8), label


def test_mmseg_random_crop_retries_until_ratio_ok():
    img, label = _cat_crop_setup()
    passing = {(0, 0), (0, 1), (1, 0)}
    checked = 0
    for seed in range(200):
        ref = np.random.default_rng(seed)
        draws = [(int(ref.integers(0, 5)), int(ref.integers(0, 5))) for _ in range(11)]
        first_pass = next((i for i, d in enumerate(draws[:10]) if d in passing), None)
        if first_pass is None or first_pass == 0:
            continue
        ci, cl = S.mmseg_random_crop(img, label, np.random.default_rng(seed), (4, 4), 0.75, 255)
        assert (int(ci[0, 0, 0]), int(ci[0, 0, 1])) == draws[first_pass]
        assert np.array_equal(cl, label[draws[first_pass][0] :][:4, draws[first_pass][1] :][:, :4])
        checked += 1
    assert checked >= 5


def test_mmseg_random_crop_gives_up_after_ten_retries():
    img, label = _positional(8, 8), np.zeros((8, 8), np.uint8)  # one class: no crop can pass
    for seed in range(10):
        ref = np.random.default_rng(seed)
        draws = [(int(ref.integers(0, 5)), int(ref.integers(0, 5))) for _ in range(11)]
        ci, _ = S.mmseg_random_crop(img, label, np.random.default_rng(seed), (4, 4), 0.75, 255)
        assert (int(ci[0, 0, 0]), int(ci[0, 0, 1])) == draws[10]  # the 11th draw is used unchecked
        # cat_max_ratio = 1 (or more: mmseg checks `cat_max_ratio < 1.`) disables the check: first draw
        for off in (1.0, 1.5):
            ci, _ = S.mmseg_random_crop(img, label, np.random.default_rng(seed), (4, 4), off, 255)
            assert (int(ci[0, 0, 0]), int(ci[0, 0, 1])) == draws[0]


def test_mmseg_random_crop_ignores_255():
    label = np.full((4, 8), 255, np.uint8)
    label[:, 0] = 1
    label[:, 1:3] = 2  # in the 4x4 crop at (0, 0): class1 4 px, class2 8 px, 255 4 px -> 8/12 < 0.75
    img = _positional(4, 8)
    ci, _ = S.mmseg_random_crop(img, label, np.random.default_rng(0), (4, 4), 0.75, 255)
    assert ci[0, 0, 1] == 0  # only offset 0 passes (others hold < 2 classes or ratio >= 0.75)


def test_pad_to_fills_255_in_label():
    img = np.full((2, 3, 3), 9, np.uint8)
    label = np.ones((2, 3), np.uint8)
    pi, pl = S.pad_to(img, label, (4, 5), (1, 2, 3), 255)
    assert pi.shape == (4, 5, 3) and pl.shape == (4, 5)
    assert np.all(pi[:2, :3] == 9) and tuple(pi[3, 4]) == (1, 2, 3) and tuple(pi[0, 4]) == (1, 2, 3)
    assert np.all(pl[:2, :3] == 1) and np.all(pl[2:] == 255) and np.all(pl[:, 3:] == 255)
    with pytest.raises(ValueError, match="smaller than the image"):
        S.pad_to(img, label, (1, 5), 0, 255)


# ---------------------------------------------------------------------------------------------- HSV / photometric
def test_hsv_known_colours_opencv_convention():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [255, 255, 0], [255, 128, 0]]], np.uint8)
    hsv = T.rgb_to_hsv_u8(rgb)
    # OpenCV: H = hue_degrees / 2 in [0, 180), S = 255 * (max - min) / max, V = max
    expected = [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 128], [30, 255, 255],
                [round(30 * 128 / 255), 255, 255]]
    assert hsv[0].tolist() == expected
    back = T.hsv_to_rgb_u8(hsv)
    assert back[0, :5].tolist() == rgb[0, :5].tolist()
    # (255, 128, 0) -> H 15 -> sector 0 with fraction 1/2 -> G = 255 * 0.5 = 127.5, truncated to 127
    assert back[0, 5].tolist() == [255, 127, 0]
    # a desaturated colour (200, 150, 100): OpenCV's fixed point gives S = (100 * sdiv[200] + 2048) >> 12 with
    # sdiv[200] = round((255 << 12) / 200) = 5222, i.e. 524248 >> 12 = 127 (exact 127.5)
    h = T.rgb_to_hsv_u8(np.array([[[200, 150, 100]]], np.uint8))[0, 0].tolist()
    assert h == [round(30 * 50 / 100), (100 * 5222 + 2048) >> 12, 200] == [15, 127, 200]
    # cyan: H = 90; 90 * float32(6/180) rounds to 3.0000002 in float32, so the fraction is 2.4e-7 and
    # G = trunc(255 * (1 - 2.4e-7)) = 254 (OpenCV's truncating SIMD path)
    cyan = T.rgb_to_hsv_u8(np.array([[[0, 255, 255]]], np.uint8))
    assert cyan[0, 0].tolist() == [90, 255, 255]
    assert T.hsv_to_rgb_u8(cyan)[0, 0].tolist() == [0, 254, 255]


def test_hsv_round_trip_error_bound():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 200, 3)).astype(np.uint8)
    back = T.hsv_to_rgb_u8(T.rgb_to_hsv_u8(img)).astype(int)
    err = np.abs(back - img.astype(int)).max(axis=-1)
    chroma = img.max(axis=-1).astype(int) - img.min(axis=-1)
    # hue is quantised to 2 degrees: +-1 degree moves the middle channel by up to chroma / 60
    assert np.all(err <= chroma / 60 + 2)
    assert err[chroma < 64].max() <= 2
    grey = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert np.array_equal(T.hsv_to_rgb_u8(T.rgb_to_hsv_u8(grey)), grey)


def test_photometric_identity_with_zero_deltas_and_unit_ranges():
    prims = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 255, 255], [40, 40, 40]], np.uint8)
    img = np.tile(prims[None], (3, 2, 1))  # colours whose OpenCV HSV round trip is exact (not cyan/magenta)
    for seed in range(20):
        out = S.photo_metric_distortion(img, np.random.default_rng(seed), brightness_delta=0,
                                        contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0)
        assert np.array_equal(out, img)


@pytest.mark.parametrize("hue_delta", [None, 1])  # None: mmseg's default, 18; 1: shifts of -1 and 0 only
def test_photometric_replays_mmseg_order(hue_delta):
    delta = 18 if hue_delta is None else hue_delta  # mmseg PhotoMetricDistortion(hue_delta=18)
    # hues 130, 63, 0 (pure red), 179 and 1 (OpenCV units): shifts wrap around 180 both ways
    img = np.array([[[100, 50, 200], [10, 250, 30], [255, 0, 0], [255, 0, 8], [255, 6, 0]]], np.uint8)
    assert T.rgb_to_hsv_u8(img)[0, :, 0].tolist() == [130, 63, 0, 179, 1]
    for seed in range(30):
        ref = np.random.default_rng(seed)
        x = img.copy()
        if ref.integers(2):
            x = np.clip(x.astype(np.float32) + np.float32(ref.uniform(-32, 32)), 0, 255).astype(np.uint8)
        mode = ref.integers(2)

        def contrast(x):
            if ref.integers(2):
                return np.clip(x.astype(np.float32) * np.float32(ref.uniform(0.5, 1.5)), 0, 255).astype(np.uint8)
            return x

        if mode == 1:
            x = contrast(x)
        if ref.integers(2):
            hsv = T.rgb_to_hsv_u8(x)
            hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * np.float32(ref.uniform(0.5, 1.5)), 0, 255)
            x = T.hsv_to_rgb_u8(hsv)
        if ref.integers(2):
            hsv = T.rgb_to_hsv_u8(x)
            hsv[..., 0] = (hsv[..., 0].astype(int) + int(ref.integers(-delta, delta))) % 180
            x = T.hsv_to_rgb_u8(hsv)
        if mode == 0:
            x = contrast(x)
        given = {} if hue_delta is None else {"hue_delta": hue_delta}
        assert np.array_equal(S.photo_metric_distortion(img, np.random.default_rng(seed), **given), x)


def test_photometric_brightness_truncates_and_clips():
    # find a seed whose first step applies brightness and nothing else, then check by hand
    img = np.array([[[0, 100, 250]]], np.uint8)
    for seed in range(200):
        ref = np.random.default_rng(seed)
        if not ref.integers(2):
            continue
        beta = ref.uniform(-32, 32)
        mode = ref.integers(2)
        if ref.integers(2) or ref.integers(2) or ref.integers(2):  # contrast / saturation / hue off
            continue
        out = S.photo_metric_distortion(img, np.random.default_rng(seed))
        assert mode in (0, 1)
        # float32 v + beta, clipped to [0, 255], then truncated by the uint8 cast
        expected = [math.floor(min(max(float(np.float32(v) + np.float32(beta)), 0.0), 255.0)) for v in (0, 100, 250)]
        assert out[0, 0].tolist() == expected
        assert expected[0] == 0 or beta > 0  # clipping at 0 for negative shifts
        return
    pytest.fail("no seed with brightness only")


# ---------------------------------------------------------------------------------------------- composed seg
def test_seg_train_transform_shapes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 128, 3)).astype(np.uint8)
    label = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(96, 128))
    t = S.SegTrainTransform(RECIPES["ade20k"].model_copy(update={"img_scale": [256, 64], "crop_size": [64, 64]}))
    for seed in range(4):
        oi, ol = t(img, label, np.random.default_rng(seed))
        assert oi.shape == (64, 64, 3) and oi.dtype == np.uint8
        assert ol.shape == (64, 64) and ol.dtype == np.uint8
        assert set(np.unique(ol)) <= {0, 1, 2, 255}
        oi2, ol2 = t(img, label, np.random.default_rng(seed))
        assert np.array_equal(oi, oi2) and np.array_equal(ol, ol2)
    # ratio 0.5 -> (128, 32) -> the image becomes 32x43, smaller than the crop: padded
    t = S.SegTrainTransform(RECIPES["ade20k"].model_copy(update={"img_scale": [256, 64], "ratio_range": [0.5, 0.5], "crop_size": [64, 64], "photometric": False}))
    oi, ol = t(img, label, rng)
    assert oi.shape == (64, 64, 3)
    assert np.all(ol[32:] == 255) and np.all(ol[:, 43:] == 255)
    assert tuple(oi[63, 63]) == T.MEAN_PAD_VAL
    np.testing.assert_allclose(T.normalize(oi)[:, 63, 63], 0.0, atol=0.01)  # ~ mmseg's pad after Normalize


def test_seg_transform_rejects_bad_label():
    t = S.SegTrainTransform(RECIPES["ade20k"])
    with pytest.raises(ValueError, match="label shape"):
        t(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 9), np.uint8), np.random.default_rng(0))


def test_dataset_view_resizes_rgb_bilinear_and_depth_nearest_then_kb_crops():
    dataset_view = D.dataset_view

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1024, 1280, 3), dtype=np.uint8)
    depth = rng.choice(np.array([0.0, 1.5, 2.25, 7.0], np.float32), size=(1024, 1280))
    out_img, out_depth = dataset_view(img, depth, resize_to=(480, 640))  # Matterport3D -> NYU size
    assert out_img.shape == (480, 640, 3) and out_depth.shape == (480, 640)
    assert set(np.unique(out_depth)) <= {0.0, 1.5, 2.25, 7.0}  # nearest: no invented depths
    kitti = rng.integers(0, 256, (375, 1242, 3), dtype=np.uint8)
    k_img, k_depth = dataset_view(kitti, np.ones((375, 1242), np.float32), kb=True)
    assert k_img.shape == (352, 1216, 3) and k_depth.shape == (352, 1216)
    assert np.array_equal(k_img, kitti[375 - 352 :, 13 : 13 + 1216])  # bottom rows, centred columns
    same_img, same_depth = dataset_view(img, depth)
    assert same_img is img and same_depth is depth


def test_sunrgbd_as_paper_and_as_dinov2_feeds_it():
    """augment.sunrgbd.resize_to is (h, w): [480, 640] (paper §4, the default) gives a landscape 480x640
    view that NYUCrop then crops; DINOv2's Resize(img_scale=(480, 640), keep_ratio=False) gives mmcv's
    (w, h), a portrait 640x480 view (docs/choices.md), which needs nyu_crop: false and a crop that fits
    (the toolbox's RandomCrop clips 416x544 to 416x480; ours asks for it, as for Taskonomy)."""
    sun = RECIPES["sunrgbd"]
    assert sun.resize_to == [480, 640] and sun.nyu_crop
    img, depth = _positional(530, 730), np.full((530, 730), 2.0, np.float32)  # a SUN RGB-D Kinect v2 frame
    out_img, out_depth = D.DepthTrainTransform(sun)(img, depth, np.random.default_rng(0))
    assert out_img.shape == (416, 544, 3) and out_depth.shape == (416, 544)
    portrait = sun.model_copy(update={"resize_to": [640, 480], "nyu_crop": False, "crop_size": [416, 480]})
    view, _ = D.dataset_view(img, depth, resize_to=portrait.resize_to)
    assert view.shape == (640, 480, 3)
    out_img, _ = D.DepthTrainTransform(portrait)(img, depth, np.random.default_rng(0))
    assert out_img.shape == (416, 480, 3)
    with pytest.raises(ValueError, match="nyu_crop needs an image of at least 472x608"):
        D.DepthTrainTransform(sun.model_copy(update={"resize_to": [640, 480]}))(img, depth, np.random.default_rng(0))


# found by mutation testing (make mutate; docs/mutation.md): inputs that tell the surviving mutants of
# training/depth_transforms.py apart
def test_nyu_crop_bounds_and_messages():
    """NYUCrop's slice ends at row 472 and column 608: an image of exactly 472x608 fits, one row or
    column fewer does not; the messages name the sizes."""
    ci, cd = D.nyu_crop(np.zeros((472, 608, 3), np.uint8), np.zeros((472, 608), np.float32))
    assert ci.shape == (427, 565, 3) and cd.shape == (427, 565)
    for h, w in [(471, 608), (472, 607)]:
        with pytest.raises(ValueError, match=rf"got \({h}, {w}\)$"):
            D.nyu_crop(np.zeros((h, w, 3), np.uint8), None)
    for shape in [(480, 641), (479, 640)]:  # a depth map larger or smaller than the image
        with pytest.raises(ValueError, match=rf"depth shape \({shape[0]}, {shape[1]}\) does not match image size \(480, 640\)$"):
            D.nyu_crop(np.zeros((480, 640, 3), np.uint8), np.zeros(shape, np.float32))


def test_kb_crop_bounds_tall_and_wide_frames():
    """KBCrop keeps the bottom 352 rows and the centred 1216 columns of any frame at least that large."""
    img, depth = _positional(352, 1216), _depth_positional(352, 1216)
    ci, cd = D.kb_crop(img, depth)
    assert np.array_equal(ci, img) and np.array_equal(cd, depth)  # exactly the crop's size: unchanged
    for h, w in [(351, 1300), (400, 1215)]:
        with pytest.raises(ValueError, match=f"at least 352x1216, got {h}x{w}"):
            D.kb_crop(np.zeros((h, w, 3), np.uint8), None)
    for shape in [(400, 1301), (399, 1300)]:
        with pytest.raises(ValueError, match="does not match"):
            D.kb_crop(np.zeros((400, 1300, 3), np.uint8), np.zeros(shape, np.float32))
    img, depth = _positional(800, 2500), _depth_positional(800, 2500)  # top = 448, left = 642
    ci, cd = D.kb_crop(img, depth)
    assert cd.shape == (352, 1216) and cd[0, 0] == 1 + 448 * 1000 + 642 and cd[-1, -1] == 1 + 799 * 1000 + 1857
    assert np.array_equal(ci, img[448:, 642:1858])


def test_rotate_fills_the_border_with_black():
    img = np.full((40, 60, 3), 255, np.uint8)
    out, _ = D.rotate(img, None, 10.0)
    assert out[0, 0].tolist() == [0, 0, 0] and out[-1, -1].tolist() == [0, 0, 0]
    assert out[20, 30].tolist() == [255, 255, 255]


def test_random_rotate_draws_its_angle_in_both_directions_and_refuses_negative_degrees():
    img, depth = _positional(40, 60), _depth_positional(40, 60)
    for seed in range(6):
        ref = np.random.default_rng(seed)
        ref.random()
        angle = ref.uniform(-2.5, 2.5)  # toolbox: np.random.uniform(min(*degree), max(*degree)), degree = (-2.5, 2.5)
        out = D.random_rotate(img, depth, np.random.default_rng(seed), prob=1.0, degree=2.5)
        want = D.rotate(img, depth, angle)
        assert np.array_equal(out[0], want[0]) and np.array_equal(out[1], want[1])
    with pytest.raises(ValueError, match="degree must be >= 0, got -0.5"):
        D.random_rotate(img, depth, np.random.default_rng(0), prob=1.0, degree=-0.5)


def test_random_crop_offsets_span_the_whole_margin():
    """Offsets are uniform over 0..margin in both axes (randint(0, margin + 1)), image and depth cut at
    the same window, for margins much larger than the crop, of 1, and without a depth map."""
    img, depth = _positional(100, 100), _depth_positional(100, 100)
    rng, tops, lefts = np.random.default_rng(0), set(), set()
    for _ in range(200):
        ci, cd = D.random_crop(img, depth, rng, (10, 10))
        top, left = divmod(int(cd[0, 0]) - 1, 1000)
        assert ci.shape == (10, 10, 3) and np.array_equal(cd, depth[top : top + 10, left : left + 10])
        assert np.array_equal(ci, img[top : top + 10, left : left + 10])
        tops.add(top), lefts.add(left)
    assert max(tops) > 80 and max(lefts) > 80 and min(tops) < 10 and min(lefts) < 10
    lefts = {int(D.random_crop(img[:10, :11], None, rng, (10, 10))[0][0, 0, 1]) for _ in range(40)}
    assert lefts == {0, 1}  # a margin of 1: both offsets
    with pytest.raises(ValueError, match="larger than the image"):
        D.random_crop(img, depth, rng, (10, 101))
    for shape in [(100, 101), (99, 100)]:
        with pytest.raises(ValueError, match="does not match"):
            D.random_crop(img, np.zeros(shape, np.float32), rng, (10, 10))


def test_rescale_keeps_at_least_one_pixel_and_leaves_factor_one_alone():
    img, depth = _positional(2, 2), _depth_positional(2, 2)
    si, sd = D.rescale(img, depth, 0.25)
    assert si.shape == (1, 1, 3) and sd.shape == (1, 1)
    same = D.rescale(img, depth, 1.0)
    assert same[0] is img and same[1] is depth


def test_colour_augmented_images_are_clipped_to_0_255_as_uint8():
    """The transform rounds ColorAug's floats back to uint8: black stays 0 and white, brightened, is 255."""
    recipe = RECIPES["nyuv2"].model_copy(update={"rotate_prob": 0, "flip_prob": 0, "color_prob": 1.0,
                                                 "brightness_range": [1.25, 1.25]})
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, 320:] = 255
    ci, _ = D.DepthTrainTransform(recipe)(img, np.ones((480, 640), np.float32), np.random.default_rng(0))
    assert ci.dtype == np.uint8 and set(np.unique(ci).tolist()) == {0, 255}


# found by mutation testing (make mutate; docs/mutation.md): inputs that tell the surviving mutants of
# training/seg_transforms.py apart
def test_rescale_size_when_the_long_edge_binds():
    # a 1000 x 100 panorama into (2048, 512): factor = min(2048 / 1000, 512 / 100) = 2.048 -> (2048, int(204.8 + 0.5))
    assert S.rescale_size(1000, 100, (2048, 512)) == (2048, 205)
    assert S.rescale_size(100, 1000, (512, 2048)) == (205, 2048)  # a portrait, the scale's pair in either order


def test_mmseg_resize_draws_its_ratio_over_the_range_and_refuses_empty_targets():
    img, label = np.zeros((10, 100, 3), np.uint8), np.zeros((10, 100), np.uint8)
    widths = set()
    for seed in range(20):
        # mmseg random_sample_ratio: ratio = random_sample() * (max - min) + min; scale (200, 100) x ratio;
        # the long edge binds (int(200 r) / 100 < int(100 r) / 10), so the width becomes int(200 r)
        ratio = np.random.default_rng(seed).random() * (2.0 - 0.5) + 0.5
        ri, rl = S.mmseg_resize(img, label, np.random.default_rng(seed), (200, 100), (0.5, 2.0))
        assert ri.shape[1] == rl.shape[1] == int(200 * ratio)
        widths.add(ri.shape[1])
    assert min(widths) < 150 < max(widths)
    # a target of one pixel is valid: scale (4, 1) puts a 10 x 10 image into 1 x 1
    square, square_label = np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)
    assert S.mmseg_resize(square, square_label, np.random.default_rng(0), (4, 1), (1.0, 1.0))[0].shape == (1, 1, 3)
    for scale, ratio in (((1, 1), (0.5, 0.5)), ((-8, 8), (1.0, 1.0))):
        with pytest.raises(ValueError, match="empty target"):
            S.mmseg_resize(img, label, np.random.default_rng(0), scale, ratio)
    for ratio in ((0.0, 1.0), (-0.5, 1.0)):
        with pytest.raises(ValueError, match="ratio_range must be positive"):
            S.mmseg_resize(img, label, np.random.default_rng(0), (200, 100), ratio)


def _mmseg_random_crop_reference(label, seed, crop, cat_max_ratio, ignore_index=255):
    """mmseg 0.27 RandomCrop.__call__ and get_crop_bbox, with numpy's Generator for np.random: the offsets."""
    rng = np.random.default_rng(seed)
    (h, w), (ch, cw) = label.shape, crop

    def bbox():
        return int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))

    oy, ox = bbox()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            labels, cnt = np.unique(label[oy:oy + ch, ox:ox + cw], return_counts=True)
            cnt = cnt[labels != ignore_index]
            if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < cat_max_ratio:
                break
            oy, ox = bbox()
    return oy, ox


def test_mmseg_random_crop_replays_mmseg_on_odd_margins():
    # margins 7 and 9 and a 5 x 6 crop: offsets whose bits overlap the crop size's, so `oy | ch` is not `oy + ch`;
    # a checkerboard of 6 x 7 blocks and a corner of 255, so many crops hold one class only
    ys, xs = np.mgrid[0:12, 0:15]
    label = (((ys // 6) + (xs // 7)) % 2).astype(np.uint8)
    label[:6, :7] = 255
    img = _positional(12, 15)
    offsets, redrawn = set(), 0
    for seed in range(200):
        oy, ox = _mmseg_random_crop_reference(label, seed, (5, 6), 0.75)
        ci, cl = S.mmseg_random_crop(img, label, np.random.default_rng(seed), (5, 6), 0.75, 255)
        assert np.array_equal(ci, img[oy:oy + 5, ox:ox + 6]) and np.array_equal(cl, label[oy:oy + 5, ox:ox + 6])
        offsets.add((oy, ox))
        redrawn += (oy, ox) != _mmseg_random_crop_reference(label, seed, (5, 6), 1.0)
    assert 10 < redrawn < 190  # the check passed some first draws and refused others
    # without the check, the offsets are uniform over the whole margin: 0..7 down, 0..9 across
    first = {_mmseg_random_crop_reference(label, seed, (5, 6), 1.0) for seed in range(300)}
    for seed in range(300):
        ci, _ = S.mmseg_random_crop(img, label, np.random.default_rng(seed), (5, 6), 1.0, 255)
        offsets.add((int(ci[0, 0, 0]), int(ci[0, 0, 1])))
    assert {o[0] for o in first} == {o[0] for o in offsets} == set(range(8))
    assert {o[1] for o in first} == {o[1] for o in offsets} == set(range(10))
    # an image no larger than the crop is taken whole
    for shape in ((5, 6), (4, 3)):
        whole, whole_label = _positional(*shape), np.zeros(shape, np.uint8)
        for seed in range(20):
            ci, cl = S.mmseg_random_crop(whole, whole_label, np.random.default_rng(seed), (5, 6), 1.0, 255)
            assert np.array_equal(ci, whole) and cl.shape == shape


def test_photometric_refuses_negative_deltas():
    for bad in ({"brightness_delta": -1}, {"hue_delta": -1}):
        with pytest.raises(ValueError, match="must be >= 0"):
            S.photo_metric_distortion(np.zeros((1, 1, 3), np.uint8), np.random.default_rng(0), **bad)


def test_pad_to_takes_one_fill_or_one_per_channel_and_a_label_of_the_image_size():
    img, label = np.full((2, 3, 3), 9, np.uint8), np.ones((2, 3), np.uint8)
    pi, pl = S.pad_to(img, label, (3, 4), 7, 255)  # a number fills every channel
    assert pi[2].tolist() == [[7, 7, 7]] * 4 and pi[:2, 3].tolist() == [[7, 7, 7]] * 2 and pl[2, 0] == 255
    assert S.pad_to(img, None, (3, 4), 7, 255)[1] is None
    for bad in ((1, 2), (1, 2, 3, 4), ((1, 2, 3),)):
        with pytest.raises(ValueError, match="pad_val must be"):
            S.pad_to(img, label, (3, 4), bad, 255)
    for shape in ((2, 2), (2, 4), (1, 3), (2, 3, 1)):
        with pytest.raises(ValueError, match="label shape"):
            S.pad_to(img, np.ones(shape, np.uint8), (3, 4), 0, 255)


def test_seg_train_transform_checks_its_recipe():
    base = RECIPES["ade20k"]
    for bad in ([512], [2048, 512, 1], [0, 512], [-1, 512], [2048, 0]):
        with pytest.raises(ValueError, match="img_scale"):
            S.SegTrainTransform(base.model_copy(update={"img_scale": bad}))
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="cat_max_ratio"):
            S.SegTrainTransform(base.model_copy(update={"cat_max_ratio": bad}))
    S.SegTrainTransform(base.model_copy(update={"img_scale": [64, 1], "cat_max_ratio": 1.0}))  # both bounds valid


@pytest.mark.parametrize("photometric", [False, True])
def test_seg_train_transform_runs_mmseg_steps_in_order_with_its_recipe(photometric):
    # a wide image whose long edge binds: img_scale (256, 64) resizes 16 x 128 to 32 x 256, (64, 64) would give 8 x 64;
    # most of the label is 255, which RandomCrop ignores (counted, no crop would pass cat_max_ratio 0.75)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 128, 3)).astype(np.uint8)
    label = np.kron(rng.choice(np.array([1, 2, 255], np.uint8), size=(4, 32), p=[0.1, 0.1, 0.8]), np.ones((4, 4), np.uint8))
    recipe = {"img_scale": [256, 64], "ratio_range": [1.0, 1.0], "crop_size": [32, 64], "cat_max_ratio": 0.75,
              "flip_prob": 0.0, "photometric": photometric}
    t = S.SegTrainTransform(RECIPES["ade20k"].model_copy(update=recipe))
    counting_255 = 0
    for seed in range(8):
        r = np.random.default_rng(seed)
        ri, rl = S.mmseg_resize(img, label, r, (256, 64), (1.0, 1.0))
        assert ri.shape == (32, 256, 3)
        ci, cl = S.mmseg_random_crop(ri, rl, r, (32, 64), 0.75, 255)
        ci, cl = T.random_flip(ci, cl, r, 0.0)
        if photometric:
            ci = S.photo_metric_distortion(ci, r)
        oi, ol = t(img, label, np.random.default_rng(seed))
        assert np.array_equal(oi, ci) and np.array_equal(ol, cl)
        r = np.random.default_rng(seed)
        S.mmseg_resize(img, label, r, (256, 64), (1.0, 1.0))
        counting_255 += not np.array_equal(S.mmseg_random_crop(ri, rl, r, (32, 64), 0.75, 254)[1], cl)
    assert counting_255 > 0  # the label tells an ignore index of 255 from none
