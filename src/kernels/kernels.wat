;; The float32 kernels of ringtrain's hot loops, compiled to src/kernels/kernels-wasm.ts by
;; scripts/build-kernels.mjs. They work on the shared memory that JavaScript passes in as env.memory, so the
;; ring and the optimizer call them on their own arrays without copying. Addresses are byte offsets.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; target[i] = first[i] + second[i] for `bytes` bytes, a multiple of 64. target may equal first or second.
  ;; f32x4.add rounds each sum exactly as a scalar float32 addition does.
  (func (export "add") (param $target i32) (param $first i32) (param $second i32) (param $bytes i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $target) (local.get $bytes)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $target) (local.get $end)))
        (v128.store offset=0 (local.get $target)
          (f32x4.add (v128.load offset=0 (local.get $first)) (v128.load offset=0 (local.get $second))))
        (v128.store offset=16 (local.get $target)
          (f32x4.add (v128.load offset=16 (local.get $first)) (v128.load offset=16 (local.get $second))))
        (v128.store offset=32 (local.get $target)
          (f32x4.add (v128.load offset=32 (local.get $first)) (v128.load offset=32 (local.get $second))))
        (v128.store offset=48 (local.get $target)
          (f32x4.add (v128.load offset=48 (local.get $first)) (v128.load offset=48 (local.get $second))))
        (local.set $target (i32.add (local.get $target) (i32.const 64)))
        (local.set $first (i32.add (local.get $first) (i32.const 64)))
        (local.set $second (i32.add (local.get $second) (i32.const 64)))
        (br $next))))

  ;; One AdamW update of `count` elements (an even number), two per iteration in float64 lanes. Each operation
  ;; is the one that src/optim/adamw-update.ts does in JavaScript numbers, in the same order, and every float32
  ;; store rounds the same way, so both give the same bits:
  ;;   g  = f32(f32(gradient * gradientFactor) * gradientScale)
  ;;   m  = f32(beta1 * m + (1 - beta1) * g)
  ;;   v  = f32(beta2 * v + ((1 - beta2) * g) * g)
  ;;   p  = f32(p * shrink - (stepSize * m) / (sqrt(v) / sqrtBiasCorrection2 + eps))
  (func (export "adamw")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $count i32)
    (param $gradientFactor f64) (param $gradientScale f64) (param $beta1 f64) (param $oneMinusBeta1 f64) (param $beta2 f64)
    (param $oneMinusBeta2 f64) (param $sqrtBiasCorrection2 f64) (param $eps f64) (param $stepSize f64)
    (param $shrink f64)
    (local $end i32)
    (local $gradient v128) (local $first v128) (local $second v128) (local $denominator v128)
    (local $factorLanes v128) (local $scaleLanes v128) (local $beta1Lanes v128) (local $oneMinusBeta1Lanes v128) (local $beta2Lanes v128)
    (local $oneMinusBeta2Lanes v128) (local $correctionLanes v128) (local $epsLanes v128) (local $stepLanes v128)
    (local $shrinkLanes v128)
    (local.set $factorLanes (f64x2.splat (local.get $gradientFactor)))
    (local.set $scaleLanes (f64x2.splat (local.get $gradientScale)))
    (local.set $beta1Lanes (f64x2.splat (local.get $beta1)))
    (local.set $oneMinusBeta1Lanes (f64x2.splat (local.get $oneMinusBeta1)))
    (local.set $beta2Lanes (f64x2.splat (local.get $beta2)))
    (local.set $oneMinusBeta2Lanes (f64x2.splat (local.get $oneMinusBeta2)))
    (local.set $correctionLanes (f64x2.splat (local.get $sqrtBiasCorrection2)))
    (local.set $epsLanes (f64x2.splat (local.get $eps)))
    (local.set $stepLanes (f64x2.splat (local.get $stepSize)))
    (local.set $shrinkLanes (f64x2.splat (local.get $shrink)))
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $count) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        ;; g = f32(f32(gradient * factor) * scale), as float64 lanes
        (local.set $gradient
          (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero
            (f64x2.mul
              (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero
                (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $g))) (local.get $factorLanes))))
              (local.get $scaleLanes)))))
        ;; m = f32(beta1 * m + (1 - beta1) * g)
        (local.set $first
          (f32x4.demote_f64x2_zero
            (f64x2.add
              (f64x2.mul (local.get $beta1Lanes) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $m))))
              (f64x2.mul (local.get $oneMinusBeta1Lanes) (local.get $gradient)))))
        (v128.store64_lane 0 (local.get $m) (local.get $first))
        ;; v = f32(beta2 * v + ((1 - beta2) * g) * g)
        (local.set $second
          (f32x4.demote_f64x2_zero
            (f64x2.add
              (f64x2.mul (local.get $beta2Lanes) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $v))))
              (f64x2.mul (f64x2.mul (local.get $oneMinusBeta2Lanes) (local.get $gradient)) (local.get $gradient)))))
        (v128.store64_lane 0 (local.get $v) (local.get $second))
        ;; denominator = sqrt(v) / sqrtBiasCorrection2 + eps
        (local.set $denominator
          (f64x2.add
            (f64x2.div (f64x2.sqrt (f64x2.promote_low_f32x4 (local.get $second))) (local.get $correctionLanes))
            (local.get $epsLanes)))
        ;; p = f32(p * shrink - (stepSize * m) / denominator)
        (v128.store64_lane 0 (local.get $p)
          (f32x4.demote_f64x2_zero
            (f64x2.sub
              (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))) (local.get $shrinkLanes))
              (f64x2.div
                (f64x2.mul (local.get $stepLanes) (f64x2.promote_low_f32x4 (local.get $first)))
                (local.get $denominator)))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (local.set $g (i32.add (local.get $g) (i32.const 8)))
        (local.set $m (i32.add (local.get $m) (i32.const 8)))
        (local.set $v (i32.add (local.get $v) (i32.const 8)))
        (br $next))))

  ;; flags[b] = 1.0 when block b (64 float32 values, the 256 bytes from values + 256 b) holds any nonzero
  ;; bit pattern, -0 included, else 0.0; for b in [0, blocks).
  (func (export "nonzeroBlocks") (param $values i32) (param $blocks i32) (param $flags i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $flags) (i32.shl (local.get $blocks) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $flags) (local.get $end)))
        (f32.store (local.get $flags)
          (select (f32.const 1) (f32.const 0)
            (v128.any_true
              (v128.or
                (v128.or
                  (v128.or
                    (v128.or (v128.load offset=0 (local.get $values)) (v128.load offset=16 (local.get $values)))
                    (v128.or (v128.load offset=32 (local.get $values)) (v128.load offset=48 (local.get $values))))
                  (v128.or
                    (v128.or (v128.load offset=64 (local.get $values)) (v128.load offset=80 (local.get $values)))
                    (v128.or (v128.load offset=96 (local.get $values)) (v128.load offset=112 (local.get $values)))))
                (v128.or
                  (v128.or
                    (v128.or (v128.load offset=128 (local.get $values)) (v128.load offset=144 (local.get $values)))
                    (v128.or (v128.load offset=160 (local.get $values)) (v128.load offset=176 (local.get $values))))
                  (v128.or
                    (v128.or (v128.load offset=192 (local.get $values)) (v128.load offset=208 (local.get $values)))
                    (v128.or (v128.load offset=224 (local.get $values)) (v128.load offset=240 (local.get $values)))))))))
        (local.set $values (i32.add (local.get $values) (i32.const 256)))
        (local.set $flags (i32.add (local.get $flags) (i32.const 4)))
        (br $next))))

  ;; Returns the sum of x * x over x = f32(values[i] * factor) for `count` elements (an even number), in float64.
  ;; Even and odd elements go to two separate sums, added at the end; src/optim/clip.ts adds in the same order.
  (func (export "sumScaledSquares") (param $values i32) (param $count i32) (param $factor f64) (result f64)
    (local $end i32) (local $sums v128) (local $scaled v128) (local $factorLanes v128)
    (local.set $factorLanes (f64x2.splat (local.get $factor)))
    (local.set $end (i32.add (local.get $values) (i32.shl (local.get $count) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $values) (local.get $end)))
        (local.set $scaled
          (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero
            (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $values))) (local.get $factorLanes)))))
        (local.set $sums (f64x2.add (local.get $sums) (f64x2.mul (local.get $scaled) (local.get $scaled))))
        (local.set $values (i32.add (local.get $values) (i32.const 8)))
        (br $next)))
    (f64.add (f64x2.extract_lane 0 (local.get $sums)) (f64x2.extract_lane 1 (local.get $sums))))

;; Continues a polynomial hash over `blocks` 64-byte blocks from `values`. The state is eight 64-bit lanes, four
  ;; vectors at `state`, read first and written back at the end. Word k of a block (k = 0 to 7, little-endian)
  ;; enters lane k as lane = lane * 0x9E3779B97F4A7C15 + word (mod 2^64). Four independent vectors keep the
  ;; multiplications from waiting on each other. The multiplier is odd, so changing any single 64-bit word of
  ;; the input always changes its lane.
  (func (export "hashBlocks") (param $values i32) (param $blocks i32) (param $state i32)
    (local $end i32) (local $multiplier v128)
    (local $lanes0 v128) (local $lanes1 v128) (local $lanes2 v128) (local $lanes3 v128)
    (local.set $multiplier (i64x2.splat (i64.const 0x9E3779B97F4A7C15)))
    (local.set $lanes0 (v128.load offset=0 (local.get $state)))
    (local.set $lanes1 (v128.load offset=16 (local.get $state)))
    (local.set $lanes2 (v128.load offset=32 (local.get $state)))
    (local.set $lanes3 (v128.load offset=48 (local.get $state)))
    (local.set $end (i32.add (local.get $values) (i32.shl (local.get $blocks) (i32.const 6))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $values) (local.get $end)))
        (local.set $lanes0
          (i64x2.add (i64x2.mul (local.get $lanes0) (local.get $multiplier)) (v128.load offset=0 (local.get $values))))
        (local.set $lanes1
          (i64x2.add (i64x2.mul (local.get $lanes1) (local.get $multiplier)) (v128.load offset=16 (local.get $values))))
        (local.set $lanes2
          (i64x2.add (i64x2.mul (local.get $lanes2) (local.get $multiplier)) (v128.load offset=32 (local.get $values))))
        (local.set $lanes3
          (i64x2.add (i64x2.mul (local.get $lanes3) (local.get $multiplier)) (v128.load offset=48 (local.get $values))))
        (local.set $values (i32.add (local.get $values) (i32.const 64)))
        (br $next)))
    (v128.store offset=0 (local.get $state) (local.get $lanes0))
    (v128.store offset=16 (local.get $state) (local.get $lanes1))
    (v128.store offset=32 (local.get $state) (local.get $lanes2))
    (v128.store offset=48 (local.get $state) (local.get $lanes3)))
)
