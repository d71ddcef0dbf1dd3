;; Merge kernels: the inner loops of `pma merge`, in WebAssembly SIMD.
;;
;; Every function works on n elements at byte addresses in this module's memory and
;; handles any n (a SIMD body plus a scalar tail that computes exactly the same thing).
;; Accumulation is acc[i] = acc[i] + c * x[i] with the multiply and the add each
;; rounded to the accumulator's precision, never fused, so results are reproducible
;; and match a scalar IEEE reference bit for bit.
(module
  (memory (export "memory") 1)

  ;; bf16 -> f32 is exact: the bf16 bits are the top half of the f32 bits.
  (func $bf16_lo (param $v v128) (result v128)
    (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16)))
  (func $bf16_hi (param $v v128) (result v128)
    (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16)))

  ;; f16 -> f32, exact for every bit pattern: shifting the magnitude into f32 position
  ;; and multiplying by 2^112 rebiases normals and normalises subnormals in one exact
  ;; multiply; Inf/NaN (exponent 31) get the f32 all-ones exponent, keeping the payload.
  (func $f16_to_f32x4 (param $h v128) (result v128)
    (local $mag v128) (local $shifted v128) (local $finite v128) (local $special v128)
    (local.set $mag (v128.and (local.get $h) (i32x4.splat (i32.const 0x7fff))))
    (local.set $shifted (i32x4.shl (local.get $mag) (i32.const 13)))
    (local.set $finite (f32x4.mul (local.get $shifted) (f32x4.splat (f32.const 0x1p112))))
    (local.set $special (v128.or (local.get $shifted) (i32x4.splat (i32.const 0x7f800000))))
    (v128.or
      (v128.bitselect (local.get $special) (local.get $finite)
        (i32x4.ge_u (local.get $mag) (i32x4.splat (i32.const 0x7c00))))
      (i32x4.shl (v128.and (local.get $h) (i32x4.splat (i32.const 0x8000))) (i32.const 16))))

  (func $f16_to_f32 (param $h i32) (result f32)
    (f32x4.extract_lane 0 (call $f16_to_f32x4 (i32x4.splat (local.get $h)))))

  ;; ---- accumulate into f32 ----

  (func (export "acc_bf16_f32") (param $acc i32) (param $src i32) (param $n i32) (param $c f32)
    (local $i i32) (local $cv v128) (local $v v128) (local $end i32)
    (local.set $cv (f32x4.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $v (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
      (v128.store (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2)))
        (f32x4.add (v128.load (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
                   (f32x4.mul (local.get $cv) (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16)))))
      (v128.store offset=16 (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2)))
        (f32x4.add (v128.load offset=16 (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
                   (f32x4.mul (local.get $cv) (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16)))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (f32.store (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2)))
        (f32.add (f32.load (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
                 (f32.mul (local.get $c)
                   (f32.reinterpret_i32 (i32.shl
                     (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1))))
                     (i32.const 16))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  (func (export "acc_f16_f32") (param $acc i32) (param $src i32) (param $n i32) (param $c f32)
    (local $i i32) (local $cv v128) (local $v v128) (local $end i32) (local $a i32)
    (local.set $cv (f32x4.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $v (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
      (v128.store (local.get $a)
        (f32x4.add (v128.load (local.get $a))
          (f32x4.mul (local.get $cv) (call $f16_to_f32x4 (i32x4.extend_low_i16x8_u (local.get $v))))))
      (v128.store offset=16 (local.get $a)
        (f32x4.add (v128.load offset=16 (local.get $a))
          (f32x4.mul (local.get $cv) (call $f16_to_f32x4 (i32x4.extend_high_i16x8_u (local.get $v))))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
      (f32.store (local.get $a)
        (f32.add (f32.load (local.get $a))
          (f32.mul (local.get $c)
            (call $f16_to_f32 (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  (func (export "acc_f32_f32") (param $acc i32) (param $src i32) (param $n i32) (param $c f32)
    (local $i i32) (local $cv v128) (local $end i32) (local $a i32) (local $s i32)
    (local.set $cv (f32x4.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))
      (v128.store (local.get $a)
        (f32x4.add (v128.load (local.get $a)) (f32x4.mul (local.get $cv) (v128.load (local.get $s)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 2))))
      (f32.store (local.get $a)
        (f32.add (f32.load (local.get $a))
          (f32.mul (local.get $c) (f32.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  ;; ---- accumulate into f64 (every source converts to f64 exactly) ----

  (func $acc_f64_pair (param $a i32) (param $x v128) (param $cv v128)
    ;; $x holds four f32 lanes; lanes 0-1 go to acc[a], lanes 2-3 to acc[a+16].
    (v128.store (local.get $a)
      (f64x2.add (v128.load (local.get $a)) (f64x2.mul (local.get $cv) (f64x2.promote_low_f32x4 (local.get $x)))))
    (v128.store offset=16 (local.get $a)
      (f64x2.add (v128.load offset=16 (local.get $a))
        (f64x2.mul (local.get $cv)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))))))

  (func (export "acc_bf16_f64") (param $acc i32) (param $src i32) (param $n i32) (param $c f64)
    (local $i i32) (local $cv v128) (local $v v128) (local $end i32) (local $a i32)
    (local.set $cv (f64x2.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $v (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (call $acc_f64_pair (local.get $a) (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16)) (local.get $cv))
      (call $acc_f64_pair (i32.add (local.get $a) (i32.const 32)) (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16)) (local.get $cv))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (f64.store (local.get $a)
        (f64.add (f64.load (local.get $a))
          (f64.mul (local.get $c)
            (f64.promote_f32 (f32.reinterpret_i32 (i32.shl
              (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1))))
              (i32.const 16)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  (func (export "acc_f16_f64") (param $acc i32) (param $src i32) (param $n i32) (param $c f64)
    (local $i i32) (local $cv v128) (local $v v128) (local $end i32) (local $a i32)
    (local.set $cv (f64x2.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $v (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (call $acc_f64_pair (local.get $a) (call $f16_to_f32x4 (i32x4.extend_low_i16x8_u (local.get $v))) (local.get $cv))
      (call $acc_f64_pair (i32.add (local.get $a) (i32.const 32))
        (call $f16_to_f32x4 (i32x4.extend_high_i16x8_u (local.get $v))) (local.get $cv))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (f64.store (local.get $a)
        (f64.add (f64.load (local.get $a))
          (f64.mul (local.get $c)
            (f64.promote_f32 (call $f16_to_f32
              (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  (func (export "acc_f32_f64") (param $acc i32) (param $src i32) (param $n i32) (param $c f64)
    (local $i i32) (local $cv v128) (local $end i32) (local $a i32)
    (local.set $cv (f64x2.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (call $acc_f64_pair (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3)))
        (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2)))) (local.get $cv))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (f64.store (local.get $a)
        (f64.add (f64.load (local.get $a))
          (f64.mul (local.get $c)
            (f64.promote_f32 (f32.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  (func (export "acc_f64_f64") (param $acc i32) (param $src i32) (param $n i32) (param $c f64)
    (local $i i32) (local $cv v128) (local $end i32) (local $a i32)
    (local.set $cv (f64x2.splat (local.get $c)))
    (local.set $end (i32.and (local.get $n) (i32.const -2)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (v128.store (local.get $a)
        (f64x2.add (v128.load (local.get $a))
          (f64x2.mul (local.get $cv) (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 2)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (f64.store (local.get $a)
        (f64.add (f64.load (local.get $a))
          (f64.mul (local.get $c) (f64.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  ;; ---- f32 -> bf16, round to nearest even; NaN stays NaN (quieted, sign kept) ----

  (func $bf16_round (param $x v128) (result v128)
    (v128.bitselect
      (v128.or (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 0x40)))
      (i32x4.shr_u
        (i32x4.add (i32x4.add (local.get $x) (i32x4.splat (i32.const 0x7fff)))
                   (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 1))))
        (i32.const 16))
      (f32x4.ne (local.get $x) (local.get $x))))

  (func (export "f32_to_bf16") (param $dst i32) (param $src i32) (param $n i32)
    (local $i i32) (local $end i32) (local $s i32)
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))
      ;; Each lane is <= 0xffff, so the saturating narrow is exact.
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u
          (call $bf16_round (v128.load (local.get $s)))
          (call $bf16_round (v128.load offset=16 (local.get $s)))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (i32x4.extract_lane 0 (call $bf16_round
          (v128.load32_splat (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  ;; ---- f64 -> f32 (round to nearest even, as IEEE demotion does) ----

  (func (export "f64_to_f32") (param $dst i32) (param $src i32) (param $n i32)
    (local $i i32)
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (f32.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
        (f32.demote_f64 (f64.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail))))

  ;; ---- how many elements are NaN or +-Inf (x - x is NaN exactly for those) ----

  (func (export "count_nonfinite_f32") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $cnt v128) (local $v v128) (local $total i32)
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $v (v128.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $v (f32x4.sub (local.get $v) (local.get $v)))
      (local.set $cnt (i32x4.sub (local.get $cnt) (f32x4.ne (local.get $v) (local.get $v))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $body)))
    (local.set $total (i32.add (i32.add (i32x4.extract_lane 0 (local.get $cnt)) (i32x4.extract_lane 1 (local.get $cnt)))
                               (i32.add (i32x4.extract_lane 2 (local.get $cnt)) (i32x4.extract_lane 3 (local.get $cnt)))))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (if (f32.ne
            (f32.sub (f32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2))))
                     (f32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))))
            (f32.const 0))
        (then (local.set $total (i32.add (local.get $total) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (local.get $total))

  (func (export "count_nonfinite_f64") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $total i32) (local $x f64)
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $x (f64.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 3)))))
      (if (f64.ne (f64.sub (local.get $x) (local.get $x)) (f64.const 0))
        (then (local.set $total (i32.add (local.get $total) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (local.get $total))
)
