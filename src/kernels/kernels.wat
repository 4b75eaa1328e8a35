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

  ;; One AdamW update of `count` elements (a multiple of four), four per iteration in float32 lanes. Every
  ;; operation is a float32 operation, rounded once, in the order that src/optim/adamw-update.ts follows with
  ;; Math.fround in JavaScript, so both give the same bits. The coefficients arrive rounded to float32.
  ;;   g = (gradient * gradientFactor) * gradientScale
  ;;   m = beta1 * m + oneMinusBeta1 * g
  ;;   v = beta2 * v + (oneMinusBeta2 * g) * g
  ;;   p = p * shrink - (stepSize * m) / (sqrt(v) / sqrtBiasCorrection2 + eps)
  (func (export "adamw")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $count i32)
    (param $gradientFactor f32) (param $gradientScale f32) (param $beta1 f32) (param $oneMinusBeta1 f32) (param $beta2 f32)
    (param $oneMinusBeta2 f32) (param $sqrtBiasCorrection2 f32) (param $eps f32) (param $stepSize f32)
    (param $shrink f32)
    (local $end i32)
    (local $gradient v128) (local $first v128) (local $second v128)
    (local $factorLanes v128) (local $scaleLanes v128) (local $beta1Lanes v128) (local $oneMinusBeta1Lanes v128) (local $beta2Lanes v128)
    (local $oneMinusBeta2Lanes v128) (local $correctionLanes v128) (local $epsLanes v128) (local $stepLanes v128)
    (local $shrinkLanes v128)
    (local.set $factorLanes (f32x4.splat (local.get $gradientFactor)))
    (local.set $scaleLanes (f32x4.splat (local.get $gradientScale)))
    (local.set $beta1Lanes (f32x4.splat (local.get $beta1)))
    (local.set $oneMinusBeta1Lanes (f32x4.splat (local.get $oneMinusBeta1)))
    (local.set $beta2Lanes (f32x4.splat (local.get $beta2)))
    (local.set $oneMinusBeta2Lanes (f32x4.splat (local.get $oneMinusBeta2)))
    (local.set $correctionLanes (f32x4.splat (local.get $sqrtBiasCorrection2)))
    (local.set $epsLanes (f32x4.splat (local.get $eps)))
    (local.set $stepLanes (f32x4.splat (local.get $stepSize)))
    (local.set $shrinkLanes (f32x4.splat (local.get $shrink)))
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $count) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $gradient
          (f32x4.mul (f32x4.mul (v128.load (local.get $g)) (local.get $factorLanes)) (local.get $scaleLanes)))
        (local.set $first
          (f32x4.add
            (f32x4.mul (local.get $beta1Lanes) (v128.load (local.get $m)))
            (f32x4.mul (local.get $oneMinusBeta1Lanes) (local.get $gradient))))
        (v128.store (local.get $m) (local.get $first))
        (local.set $second
          (f32x4.add
            (f32x4.mul (local.get $beta2Lanes) (v128.load (local.get $v)))
            (f32x4.mul (f32x4.mul (local.get $oneMinusBeta2Lanes) (local.get $gradient)) (local.get $gradient))))
        (v128.store (local.get $v) (local.get $second))
        (v128.store (local.get $p)
          (f32x4.sub
            (f32x4.mul (v128.load (local.get $p)) (local.get $shrinkLanes))
            (f32x4.div
              (f32x4.mul (local.get $stepLanes) (local.get $first))
              (f32x4.add (f32x4.div (f32x4.sqrt (local.get $second)) (local.get $correctionLanes)) (local.get $epsLanes)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (local.set $m (i32.add (local.get $m) (i32.const 16)))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
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

  ;; Batched matrix product c[t] = op(a[t]) @ op(b[t]) for t in [0, batch), float32, row-major. op(a[t]) is m x k:
  ;; a[t] itself, or with $transposeA set the transpose of a stored k x m matrix. op(b[t]) is k x n: b[t] itself,
  ;; or with $transposeB set the transpose of a stored n x k matrix, which is first copied transposed into
  ;; `scratch` (k * n floats). Each output is the float32 sum, in order p = 0, 1, ..., k - 1 and starting from +0,
  ;; of the float32 products op(a)[i, p] * op(b)[p, j], each operation rounded once, so a scalar loop in the same
  ;; order gives the same bits. Sixteen, then four, then one output of a row are computed at a time.
  (func (export "batchMatMul")
    (param $a i32) (param $b i32) (param $c i32) (param $scratch i32) (param $batch i32) (param $m i32) (param $k i32)
    (param $n i32) (param $transposeA i32) (param $transposeB i32)
    (local $t i32) (local $i i32) (local $j i32) (local $p i32)
    (local $aStep i32) (local $aRowStep i32) (local $rowA i32) (local $bRows i32) (local $bColumn i32) (local $out i32)
    (local $aAt i32) (local $rowBytes i32)
    (local $s v128) (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) (local $sum f32)
    ;; Byte step of op(a) along p, and from one row i to the next.
    (if (local.get $transposeA)
      (then
        (local.set $aStep (i32.shl (local.get $m) (i32.const 2)))
        (local.set $aRowStep (i32.const 4)))
      (else
        (local.set $aStep (i32.const 4))
        (local.set $aRowStep (i32.shl (local.get $k) (i32.const 2)))))
    (local.set $rowBytes (i32.shl (local.get $n) (i32.const 2)))
    (local.set $t (i32.const 0))
    (block $batches
      (loop $nextBatch
        (br_if $batches (i32.ge_u (local.get $t) (local.get $batch)))
        (local.set $bRows (local.get $b))
        (if (local.get $transposeB)
          (then
            ;; scratch[p * n + j] = b[j * k + p]
            (local.set $j (i32.const 0))
            (block $copied
              (loop $copyRow
                (br_if $copied (i32.ge_u (local.get $j) (local.get $n)))
                (local.set $p (i32.const 0))
                (block $rowCopied
                  (loop $copyValue
                    (br_if $rowCopied (i32.ge_u (local.get $p) (local.get $k)))
                    (f32.store
                      (i32.add (local.get $scratch)
                        (i32.shl (i32.add (i32.mul (local.get $p) (local.get $n)) (local.get $j)) (i32.const 2)))
                      (f32.load
                        (i32.add (local.get $b)
                          (i32.shl (i32.add (i32.mul (local.get $j) (local.get $k)) (local.get $p)) (i32.const 2)))))
                    (local.set $p (i32.add (local.get $p) (i32.const 1)))
                    (br $copyValue)))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $copyRow)))
            (local.set $bRows (local.get $scratch))))
        (local.set $rowA (local.get $a))
        (local.set $i (i32.const 0))
        (block $rows
          (loop $nextRow
            (br_if $rows (i32.ge_u (local.get $i) (local.get $m)))
            (local.set $j (i32.const 0))
            ;; Sixteen outputs at a time, in four vectors.
            (block $wideDone
              (loop $wide
                (br_if $wideDone (i32.gt_u (i32.add (local.get $j) (i32.const 16)) (local.get $n)))
                (local.set $acc0 (v128.const i32x4 0 0 0 0))
                (local.set $acc1 (v128.const i32x4 0 0 0 0))
                (local.set $acc2 (v128.const i32x4 0 0 0 0))
                (local.set $acc3 (v128.const i32x4 0 0 0 0))
                (local.set $aAt (local.get $rowA))
                (local.set $bColumn (i32.add (local.get $bRows) (i32.shl (local.get $j) (i32.const 2))))
                (local.set $p (i32.const 0))
                (block $sumDone
                  (loop $sum
                    (br_if $sumDone (i32.ge_u (local.get $p) (local.get $k)))
                    (local.set $s (v128.load32_splat (local.get $aAt)))
                    (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (local.get $s) (v128.load offset=0 (local.get $bColumn)))))
                    (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $bColumn)))))
                    (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $s) (v128.load offset=32 (local.get $bColumn)))))
                    (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (local.get $s) (v128.load offset=48 (local.get $bColumn)))))
                    (local.set $aAt (i32.add (local.get $aAt) (local.get $aStep)))
                    (local.set $bColumn (i32.add (local.get $bColumn) (local.get $rowBytes)))
                    (local.set $p (i32.add (local.get $p) (i32.const 1)))
                    (br $sum)))
                (local.set $out (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))))
                (v128.store offset=0 (local.get $out) (local.get $acc0))
                (v128.store offset=16 (local.get $out) (local.get $acc1))
                (v128.store offset=32 (local.get $out) (local.get $acc2))
                (v128.store offset=48 (local.get $out) (local.get $acc3))
                (local.set $j (i32.add (local.get $j) (i32.const 16)))
                (br $wide)))
            ;; Four outputs at a time.
            (block $narrowDone
              (loop $narrow
                (br_if $narrowDone (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $n)))
                (local.set $acc0 (v128.const i32x4 0 0 0 0))
                (local.set $aAt (local.get $rowA))
                (local.set $bColumn (i32.add (local.get $bRows) (i32.shl (local.get $j) (i32.const 2))))
                (local.set $p (i32.const 0))
                (block $sumDone
                  (loop $sum
                    (br_if $sumDone (i32.ge_u (local.get $p) (local.get $k)))
                    (local.set $acc0
                      (f32x4.add (local.get $acc0) (f32x4.mul (v128.load32_splat (local.get $aAt)) (v128.load (local.get $bColumn)))))
                    (local.set $aAt (i32.add (local.get $aAt) (local.get $aStep)))
                    (local.set $bColumn (i32.add (local.get $bColumn) (local.get $rowBytes)))
                    (local.set $p (i32.add (local.get $p) (i32.const 1)))
                    (br $sum)))
                (v128.store (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))) (local.get $acc0))
                (local.set $j (i32.add (local.get $j) (i32.const 4)))
                (br $narrow)))
            ;; The last n mod 4 outputs one by one.
            (block $scalarDone
              (loop $scalar
                (br_if $scalarDone (i32.ge_u (local.get $j) (local.get $n)))
                (local.set $sum (f32.const 0))
                (local.set $aAt (local.get $rowA))
                (local.set $bColumn (i32.add (local.get $bRows) (i32.shl (local.get $j) (i32.const 2))))
                (local.set $p (i32.const 0))
                (block $sumDone
                  (loop $sum
                    (br_if $sumDone (i32.ge_u (local.get $p) (local.get $k)))
                    (local.set $sum (f32.add (local.get $sum) (f32.mul (f32.load (local.get $aAt)) (f32.load (local.get $bColumn)))))
                    (local.set $aAt (i32.add (local.get $aAt) (local.get $aStep)))
                    (local.set $bColumn (i32.add (local.get $bColumn) (local.get $rowBytes)))
                    (local.set $p (i32.add (local.get $p) (i32.const 1)))
                    (br $sum)))
                (f32.store (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))) (local.get $sum))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $scalar)))
            (local.set $rowA (i32.add (local.get $rowA) (local.get $aRowStep)))
            (local.set $c (i32.add (local.get $c) (local.get $rowBytes)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $nextRow)))
        (local.set $a (i32.add (local.get $a) (i32.shl (i32.mul (local.get $m) (local.get $k)) (i32.const 2))))
        (local.set $b (i32.add (local.get $b) (i32.shl (i32.mul (local.get $k) (local.get $n)) (i32.const 2))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $nextBatch))))

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
