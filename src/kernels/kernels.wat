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
  ;;   p = p * shrink - (stepSize * m) / (sqrt(v) + eps)
  (func (export "adamw")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $count i32)
    (param $gradientFactor f32) (param $gradientScale f32) (param $beta1 f32) (param $oneMinusBeta1 f32) (param $beta2 f32)
    (param $oneMinusBeta2 f32) (param $eps f32) (param $stepSize f32)
    (param $shrink f32)
    (local $end i32)
    (local $gradient v128) (local $first v128) (local $second v128)
    (local $factorLanes v128) (local $scaleLanes v128) (local $beta1Lanes v128) (local $oneMinusBeta1Lanes v128) (local $beta2Lanes v128)
    (local $oneMinusBeta2Lanes v128) (local $epsLanes v128) (local $stepLanes v128)
    (local $shrinkLanes v128)
    (local.set $factorLanes (f32x4.splat (local.get $gradientFactor)))
    (local.set $scaleLanes (f32x4.splat (local.get $gradientScale)))
    (local.set $beta1Lanes (f32x4.splat (local.get $beta1)))
    (local.set $oneMinusBeta1Lanes (f32x4.splat (local.get $oneMinusBeta1)))
    (local.set $beta2Lanes (f32x4.splat (local.get $beta2)))
    (local.set $oneMinusBeta2Lanes (f32x4.splat (local.get $oneMinusBeta2)))
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
              (f32x4.add (f32x4.sqrt (local.get $second)) (local.get $epsLanes)))))
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

  ;; Copies each block of 64 float32 values (256 bytes) of `values` whose flag (one float32 per block at `flags`)
  ;; is above 0 to the next free place of `packed`, in block order, for `blocks` blocks. Returns the number of
  ;; values copied. With $unpack set it copies the other way: the next packed block back into each flagged block.
  (func (export "packBlocks") (param $values i32) (param $flags i32) (param $blocks i32) (param $packed i32)
    (param $unpack i32) (result i32)
    (local $end i32) (local $from i32) (local $to i32) (local $start i32)
    (local.set $start (local.get $packed))
    (local.set $end (i32.add (local.get $flags) (i32.shl (local.get $blocks) (i32.const 2))))
    (block $done
      (loop $nextBlock
        (br_if $done (i32.ge_u (local.get $flags) (local.get $end)))
        (if (f32.gt (f32.load (local.get $flags)) (f32.const 0))
          (then
            (if (local.get $unpack)
              (then
                (local.set $from (local.get $packed))
                (local.set $to (local.get $values)))
              (else
                (local.set $from (local.get $values))
                (local.set $to (local.get $packed))))
            (v128.store offset=0 (local.get $to) (v128.load offset=0 (local.get $from)))
            (v128.store offset=16 (local.get $to) (v128.load offset=16 (local.get $from)))
            (v128.store offset=32 (local.get $to) (v128.load offset=32 (local.get $from)))
            (v128.store offset=48 (local.get $to) (v128.load offset=48 (local.get $from)))
            (v128.store offset=64 (local.get $to) (v128.load offset=64 (local.get $from)))
            (v128.store offset=80 (local.get $to) (v128.load offset=80 (local.get $from)))
            (v128.store offset=96 (local.get $to) (v128.load offset=96 (local.get $from)))
            (v128.store offset=112 (local.get $to) (v128.load offset=112 (local.get $from)))
            (v128.store offset=128 (local.get $to) (v128.load offset=128 (local.get $from)))
            (v128.store offset=144 (local.get $to) (v128.load offset=144 (local.get $from)))
            (v128.store offset=160 (local.get $to) (v128.load offset=160 (local.get $from)))
            (v128.store offset=176 (local.get $to) (v128.load offset=176 (local.get $from)))
            (v128.store offset=192 (local.get $to) (v128.load offset=192 (local.get $from)))
            (v128.store offset=208 (local.get $to) (v128.load offset=208 (local.get $from)))
            (v128.store offset=224 (local.get $to) (v128.load offset=224 (local.get $from)))
            (v128.store offset=240 (local.get $to) (v128.load offset=240 (local.get $from)))
            (local.set $packed (i32.add (local.get $packed) (i32.const 256)))))
        (local.set $values (i32.add (local.get $values) (i32.const 256)))
        (local.set $flags (i32.add (local.get $flags) (i32.const 4)))
        (br $nextBlock)))
    (i32.shr_u (i32.sub (local.get $packed) (local.get $start)) (i32.const 2)))

  ;; Adds the sums of squares of `blocks` blocks of 64 float32 values to `total` and returns it. In each block,
  ;; x = f32(value * factor) and f32(x * x) go to 16 float32 lanes (value 16 * r + 4 * a + l of the block into
  ;; lane l of accumulator a, for r = 0 to 3). The block's sum is then s[l] = (acc0[l] + acc1[l]) + (acc2[l] +
  ;; acc3[l]) in float32, and (s[0] + s[2]) + (s[1] + s[3]) in float64, which is added to `total`. A block of
  ;; zeros adds exactly +0. src/optim/clip.ts computes partial blocks in the same order.
  (func (export "sumScaledSquares") (param $values i32) (param $blocks i32) (param $factor f32) (param $total f64)
    (result f64)
    (local $end i32) (local $r i32) (local $x v128) (local $factorLanes v128) (local $pairs v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local.set $factorLanes (f32x4.splat (local.get $factor)))
    (local.set $end (i32.add (local.get $values) (i32.shl (local.get $blocks) (i32.const 8))))
    (block $done
      (loop $nextBlock
        (br_if $done (i32.ge_u (local.get $values) (local.get $end)))
        (local.set $acc0 (v128.const i32x4 0 0 0 0))
        (local.set $acc1 (v128.const i32x4 0 0 0 0))
        (local.set $acc2 (v128.const i32x4 0 0 0 0))
        (local.set $acc3 (v128.const i32x4 0 0 0 0))
        (local.set $r (i32.const 0))
        (block $blockDone
          (loop $row
            (br_if $blockDone (i32.ge_u (local.get $r) (i32.const 4)))
            (local.set $x (f32x4.mul (v128.load offset=0 (local.get $values)) (local.get $factorLanes)))
            (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (local.get $x) (local.get $x))))
            (local.set $x (f32x4.mul (v128.load offset=16 (local.get $values)) (local.get $factorLanes)))
            (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (local.get $x) (local.get $x))))
            (local.set $x (f32x4.mul (v128.load offset=32 (local.get $values)) (local.get $factorLanes)))
            (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $x) (local.get $x))))
            (local.set $x (f32x4.mul (v128.load offset=48 (local.get $values)) (local.get $factorLanes)))
            (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (local.get $x) (local.get $x))))
            (local.set $values (i32.add (local.get $values) (i32.const 64)))
            (local.set $r (i32.add (local.get $r) (i32.const 1)))
            (br $row)))
        (local.set $x
          (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (f32x4.add (local.get $acc2) (local.get $acc3))))
        ;; (s[0] + s[2], s[1] + s[3]) in float64, then the two lanes.
        (local.set $pairs
          (f64x2.add
            (f64x2.promote_low_f32x4 (local.get $x))
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))))
        (local.set $total
          (f64.add (local.get $total)
            (f64.add (f64x2.extract_lane 0 (local.get $pairs)) (f64x2.extract_lane 1 (local.get $pairs)))))
        (br $nextBlock)))
    (local.get $total))

  ;; Batched matrix product c[t] = op(a[t]) @ op(b[t]) for t in [0, batch), float32, row-major. op(a[t]) is m x k:
  ;; a[t] itself, or with $transposeA set the transpose of a stored k x m matrix. op(b[t]) is k x n: b[t] itself,
  ;; or with $transposeB set the transpose of a stored n x k matrix, which is first copied transposed into
  ;; `scratch` (k * n floats). Each output is the float32 sum, in order p = 0, 1, ..., k - 1 and starting from +0,
  ;; of the float32 products op(a)[i, p] * op(b)[p, j], each operation rounded once, so a scalar loop in the same
  ;; order gives the same bits. Rows go four at a time in blocks of 4 x 8 outputs, which load each vector of b
  ;; once for four rows; the rows and columns left over go through $productRow.
  (func (export "batchMatMul")
    (param $a i32) (param $b i32) (param $c i32) (param $scratch i32) (param $batch i32) (param $m i32) (param $k i32)
    (param $n i32) (param $transposeA i32) (param $transposeB i32)
    (local $t i32) (local $i i32) (local $j i32) (local $p i32) (local $r i32)
    (local $aStep i32) (local $aRowStep i32) (local $rowA i32) (local $bRows i32) (local $bColumn i32) (local $out i32)
    (local $aAt i32) (local $rowBytes i32) (local $rowStep2 i32) (local $rowStep3 i32)
    (local $s v128) (local $b0 v128) (local $b1 v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local $acc4 v128) (local $acc5 v128) (local $acc6 v128) (local $acc7 v128)
    ;; Byte step of op(a) along p, and from one row i to the next.
    (if (local.get $transposeA)
      (then
        (local.set $aStep (i32.shl (local.get $m) (i32.const 2)))
        (local.set $aRowStep (i32.const 4)))
      (else
        (local.set $aStep (i32.const 4))
        (local.set $aRowStep (i32.shl (local.get $k) (i32.const 2)))))
    (local.set $rowStep2 (i32.shl (local.get $aRowStep) (i32.const 1)))
    (local.set $rowStep3 (i32.add (local.get $rowStep2) (local.get $aRowStep)))
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
        (block $quadsDone
          (loop $quads
            (br_if $quadsDone (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $m)))
            (local.set $j (i32.const 0))
            ;; Blocks of four rows by eight outputs, in eight vectors.
            (block $wideDone
              (loop $wide
                (br_if $wideDone (i32.gt_u (i32.add (local.get $j) (i32.const 8)) (local.get $n)))
                (local.set $acc0 (v128.const i32x4 0 0 0 0))
                (local.set $acc1 (v128.const i32x4 0 0 0 0))
                (local.set $acc2 (v128.const i32x4 0 0 0 0))
                (local.set $acc3 (v128.const i32x4 0 0 0 0))
                (local.set $acc4 (v128.const i32x4 0 0 0 0))
                (local.set $acc5 (v128.const i32x4 0 0 0 0))
                (local.set $acc6 (v128.const i32x4 0 0 0 0))
                (local.set $acc7 (v128.const i32x4 0 0 0 0))
                (local.set $aAt (local.get $rowA))
                (local.set $bColumn (i32.add (local.get $bRows) (i32.shl (local.get $j) (i32.const 2))))
                (local.set $p (i32.const 0))
                (block $sumDone
                  (loop $sum
                    (br_if $sumDone (i32.ge_u (local.get $p) (local.get $k)))
                    (local.set $b0 (v128.load offset=0 (local.get $bColumn)))
                    (local.set $b1 (v128.load offset=16 (local.get $bColumn)))
                    (local.set $s (v128.load32_splat (local.get $aAt)))
                    (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (local.get $s) (local.get $b0))))
                    (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (local.get $s) (local.get $b1))))
                    (local.set $s (v128.load32_splat (i32.add (local.get $aAt) (local.get $aRowStep))))
                    (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $s) (local.get $b0))))
                    (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (local.get $s) (local.get $b1))))
                    (local.set $s (v128.load32_splat (i32.add (local.get $aAt) (local.get $rowStep2))))
                    (local.set $acc4 (f32x4.add (local.get $acc4) (f32x4.mul (local.get $s) (local.get $b0))))
                    (local.set $acc5 (f32x4.add (local.get $acc5) (f32x4.mul (local.get $s) (local.get $b1))))
                    (local.set $s (v128.load32_splat (i32.add (local.get $aAt) (local.get $rowStep3))))
                    (local.set $acc6 (f32x4.add (local.get $acc6) (f32x4.mul (local.get $s) (local.get $b0))))
                    (local.set $acc7 (f32x4.add (local.get $acc7) (f32x4.mul (local.get $s) (local.get $b1))))
                    (local.set $aAt (i32.add (local.get $aAt) (local.get $aStep)))
                    (local.set $bColumn (i32.add (local.get $bColumn) (local.get $rowBytes)))
                    (local.set $p (i32.add (local.get $p) (i32.const 1)))
                    (br $sum)))
                (local.set $out (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))))
                (v128.store offset=0 (local.get $out) (local.get $acc0))
                (v128.store offset=16 (local.get $out) (local.get $acc1))
                (local.set $out (i32.add (local.get $out) (local.get $rowBytes)))
                (v128.store offset=0 (local.get $out) (local.get $acc2))
                (v128.store offset=16 (local.get $out) (local.get $acc3))
                (local.set $out (i32.add (local.get $out) (local.get $rowBytes)))
                (v128.store offset=0 (local.get $out) (local.get $acc4))
                (v128.store offset=16 (local.get $out) (local.get $acc5))
                (local.set $out (i32.add (local.get $out) (local.get $rowBytes)))
                (v128.store offset=0 (local.get $out) (local.get $acc6))
                (v128.store offset=16 (local.get $out) (local.get $acc7))
                (local.set $j (i32.add (local.get $j) (i32.const 8)))
                (br $wide)))
            ;; The columns left over, row by row.
            (if (i32.lt_u (local.get $j) (local.get $n))
              (then
                (local.set $r (i32.const 0))
                (block $tailsDone
                  (loop $tails
                    (br_if $tailsDone (i32.ge_u (local.get $r) (i32.const 4)))
                    (call $productRow
                      (i32.add (local.get $rowA) (i32.mul (local.get $r) (local.get $aRowStep)))
                      (local.get $bRows)
                      (i32.add (local.get $c) (i32.mul (local.get $r) (local.get $rowBytes)))
                      (local.get $j) (local.get $k) (local.get $n) (local.get $aStep))
                    (local.set $r (i32.add (local.get $r) (i32.const 1)))
                    (br $tails)))))
            (local.set $rowA (i32.add (local.get $rowA) (i32.shl (local.get $aRowStep) (i32.const 2))))
            (local.set $c (i32.add (local.get $c) (i32.shl (local.get $rowBytes) (i32.const 2))))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $quads)))
        ;; The rows left over, one by one.
        (block $rowsDone
          (loop $rows
            (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $m)))
            (call $productRow (local.get $rowA) (local.get $bRows) (local.get $c) (i32.const 0) (local.get $k) (local.get $n)
              (local.get $aStep))
            (local.set $rowA (i32.add (local.get $rowA) (local.get $aRowStep)))
            (local.set $c (i32.add (local.get $c) (local.get $rowBytes)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows)))
        (local.set $a (i32.add (local.get $a) (i32.shl (i32.mul (local.get $m) (local.get $k)) (i32.const 2))))
        (local.set $b (i32.add (local.get $b) (i32.shl (i32.mul (local.get $k) (local.get $n)) (i32.const 2))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $nextBatch))))

  ;; Outputs j, j + 1, ..., n - 1 of one row of a product: c[j'] = sum over p of a[p * aStep bytes] * bRows[p, j'],
  ;; with bRows a k x n row-major matrix. Same order of operations as batchMatMul; sixteen, then four, then one
  ;; output at a time.
  (func $productRow
    (param $rowA i32) (param $bRows i32) (param $c i32) (param $j i32) (param $k i32) (param $n i32) (param $aStep i32)
    (local $p i32) (local $aAt i32) (local $bColumn i32) (local $out i32) (local $rowBytes i32)
    (local $s v128) (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) (local $sum f32)
    (local.set $rowBytes (i32.shl (local.get $n) (i32.const 2)))
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
        (br $scalar))))

  ;; out[j] = x[0, j] + x[1, j] + ... + x[rows - 1, j] for a row-major rows x columns matrix x, each sum in that
  ;; order from +0 with one float32 rounding per addition. Four columns at a time in a vector, the rest one by one.
  (func (export "columnSums") (param $x i32) (param $out i32) (param $rows i32) (param $columns i32)
    (local $i i32) (local $j i32) (local $at i32) (local $rowBytes i32) (local $acc v128) (local $sum f32)
    (local.set $rowBytes (i32.shl (local.get $columns) (i32.const 2)))
    (local.set $j (i32.const 0))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $columns)))
        (local.set $acc (v128.const i32x4 0 0 0 0))
        (local.set $at (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))
        (local.set $i (i32.const 0))
        (block $rowsDone
          (loop $rows
            (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $rows)))
            (local.set $acc (f32x4.add (local.get $acc) (v128.load (local.get $at))))
            (local.set $at (i32.add (local.get $at) (local.get $rowBytes)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows)))
        (v128.store (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 2))) (local.get $acc))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $vectors)))
    (block $scalarsDone
      (loop $scalars
        (br_if $scalarsDone (i32.ge_u (local.get $j) (local.get $columns)))
        (local.set $sum (f32.const 0))
        (local.set $at (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))
        (local.set $i (i32.const 0))
        (block $rowsDone
          (loop $rows
            (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $rows)))
            (local.set $sum (f32.add (local.get $sum) (f32.load (local.get $at))))
            (local.set $at (i32.add (local.get $at) (local.get $rowBytes)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows)))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 2))) (local.get $sum))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $scalars))))

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
