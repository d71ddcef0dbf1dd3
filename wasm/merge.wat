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

  ;; ---- rounding the accumulator to the output dtype ----
;;
;; Each emit function writes n output elements and returns how many of them are NaN or
;; +-Inf (exponent all ones): counting while converting spares a second pass over the
;; accumulator, and counting the output also catches finite sums that overflow the
;; output dtype.

  ;; f32 bits -> bf16 bits (in i32 lanes), round to nearest even; NaN stays NaN
  ;; (quieted, sign kept).
  (func $bf16_round (param $x v128) (result v128)
    (v128.bitselect
      (v128.or (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 0x40)))
      (i32x4.shr_u
        (i32x4.add (i32x4.add (local.get $x) (i32x4.splat (i32.const 0x7fff)))
                   (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 1))))
        (i32.const 16))
      (f32x4.ne (local.get $x) (local.get $x))))

  ;; f32 bits -> f16 bits (in i32 lanes), round to nearest even, the same function as
  ;; f16FromF32Bits in src/tensor/f16.ts: normals rebias the exponent and round off 13
  ;; bits (a carry into the exponent is the correct rounding, up to Inf); below 2^-14
  ;; adding 0.5 (whose ulp, 2^-24, is the f16 subnormal step) lets the FPU round to the
  ;; subnormal grid, and the bits above 0.5's are the result; NaN keeps its top payload
  ;; bits and gets the quiet bit.
  (func $f16_round (param $x v128) (result v128)
    (local $a v128) (local $normal v128) (local $sub v128) (local $big v128)
    (local.set $a (v128.and (local.get $x) (i32x4.splat (i32.const 0x7fffffff))))
    (local.set $normal
      (i32x4.shr_u
        (i32x4.add (i32x4.add (local.get $a) (i32x4.splat (i32.const 0xc8000fff))) ;; - 0x38000000 + 0x0fff
                   (v128.and (i32x4.shr_u (local.get $a) (i32.const 13)) (i32x4.splat (i32.const 1))))
        (i32.const 13)))
    (local.set $sub
      (i32x4.sub (f32x4.add (local.get $a) (f32x4.splat (f32.const 0.5))) (i32x4.splat (i32.const 0x3f000000))))
    (local.set $big
      (v128.bitselect
        (v128.or (i32x4.splat (i32.const 0x7e00)) (v128.and (i32x4.shr_u (local.get $a) (i32.const 13)) (i32x4.splat (i32.const 0x03ff))))
        (i32x4.splat (i32.const 0x7c00))
        (i32x4.gt_u (local.get $a) (i32x4.splat (i32.const 0x7f800000)))))
    (v128.or
      (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 0x8000)))
      (v128.bitselect
        (local.get $big)
        (v128.bitselect (local.get $normal) (local.get $sub) (i32x4.ge_u (local.get $a) (i32x4.splat (i32.const 0x38800000))))
        (i32x4.ge_u (local.get $a) (i32x4.splat (i32.const 0x47800000))))))

  ;; Four f64 (two in $a, two in $b) -> f32 bits rounded to odd (see
  ;; src/tensor/round-to-odd.ts): the nearest-even f32, stepped back toward zero when it
  ;; rounded away, with the last bit set when anything was dropped. One nearest-even
  ;; rounding of these bits to bf16 or f16 is then the single rounding of the f64 value.
  (func $f64x4_to_f32_odd (param $a v128) (param $b v128) (result v128)
    (local $ra v128) (local $rb v128) (local $ba v128) (local $bb v128)
    (local.set $ra (f32x4.demote_f64x2_zero (local.get $a)))
    (local.set $rb (f32x4.demote_f64x2_zero (local.get $b)))
    (local.set $ba (f64x2.promote_low_f32x4 (local.get $ra)))
    (local.set $bb (f64x2.promote_low_f32x4 (local.get $rb)))
    (v128.or
      (i32x4.add
        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $ra) (local.get $rb))
        ;; -1 in the lanes that rounded away from zero
        (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
          (f64x2.gt (f64x2.abs (local.get $ba)) (f64x2.abs (local.get $a)))
          (f64x2.gt (f64x2.abs (local.get $bb)) (f64x2.abs (local.get $b)))))
      (v128.and
        (i32x4.splat (i32.const 1))
        (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
          (f64x2.ne (local.get $ba) (local.get $a))
          (f64x2.ne (local.get $bb) (local.get $b))))))

  ;; -1 in each i32 lane whose 16-bit pattern has an all-ones exponent under $mask.
  (func $special16 (param $v v128) (param $mask i32) (result v128)
    (i32x4.eq (v128.and (local.get $v) (i32x4.splat (local.get $mask))) (i32x4.splat (local.get $mask))))

  (func $sum_lanes (param $v v128) (result i32)
    (i32.add (i32.add (i32x4.extract_lane 0 (local.get $v)) (i32x4.extract_lane 1 (local.get $v)))
             (i32.add (i32x4.extract_lane 2 (local.get $v)) (i32x4.extract_lane 3 (local.get $v)))))

  (func (export "f32_to_bf16") (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $s i32) (local $lo v128) (local $hi v128) (local $cnt v128) (local $one v128)
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))
      (local.set $lo (call $bf16_round (v128.load (local.get $s))))
      (local.set $hi (call $bf16_round (v128.load offset=16 (local.get $s))))
      (local.set $cnt (i32x4.add (local.get $cnt)
        (i32x4.add (call $special16 (local.get $lo) (i32.const 0x7f80)) (call $special16 (local.get $hi) (i32.const 0x7f80)))))
      ;; Each lane is <= 0xffff, so the saturating narrow is exact.
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u (local.get $lo) (local.get $hi)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $one (call $bf16_round (v128.load32_splat (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $cnt (i32x4.add (local.get $cnt) (v128.and (call $special16 (local.get $one) (i32.const 0x7f80)) (v128.const i32x4 -1 0 0 0))))
      (i32.store16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1))) (i32x4.extract_lane 0 (local.get $one)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (i32.sub (i32.const 0) (call $sum_lanes (local.get $cnt))))

  (func (export "f32_to_f16") (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $s i32) (local $lo v128) (local $hi v128) (local $cnt v128) (local $one v128)
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))
      (local.set $lo (call $f16_round (v128.load (local.get $s))))
      (local.set $hi (call $f16_round (v128.load offset=16 (local.get $s))))
      (local.set $cnt (i32x4.add (local.get $cnt)
        (i32x4.add (call $special16 (local.get $lo) (i32.const 0x7c00)) (call $special16 (local.get $hi) (i32.const 0x7c00)))))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u (local.get $lo) (local.get $hi)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $one (call $f16_round (v128.load32_splat (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $cnt (i32x4.add (local.get $cnt) (v128.and (call $special16 (local.get $one) (i32.const 0x7c00)) (v128.const i32x4 -1 0 0 0))))
      (i32.store16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1))) (i32x4.extract_lane 0 (local.get $one)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (i32.sub (i32.const 0) (call $sum_lanes (local.get $cnt))))

  ;; f64 -> f32, round to nearest even (IEEE demotion).
  (func (export "f64_to_f32") (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $s i32) (local $r v128) (local $cnt v128) (local $x f32)
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3))))
      (local.set $r (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
        (f32x4.demote_f64x2_zero (v128.load (local.get $s)))
        (f32x4.demote_f64x2_zero (v128.load offset=16 (local.get $s)))))
      (local.set $cnt (i32x4.add (local.get $cnt)
        (i32x4.eq (v128.and (local.get $r) (i32x4.splat (i32.const 0x7f800000))) (i32x4.splat (i32.const 0x7f800000)))))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2))) (local.get $r))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $body)))
    (local.set $end (i32.sub (i32.const 0) (call $sum_lanes (local.get $cnt))))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $x (f32.demote_f64 (f64.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3))))))
      (if (f32.ne (f32.sub (local.get $x) (local.get $x)) (f32.const 0))
        (then (local.set $end (i32.add (local.get $end) (i32.const 1)))))
      (f32.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2))) (local.get $x))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (local.get $end))

  (func (export "f64_to_bf16") (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $s i32) (local $lo v128) (local $hi v128) (local $cnt v128) (local $one v128) (local $x v128)
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3))))
      (local.set $lo (call $bf16_round (call $f64x4_to_f32_odd (v128.load (local.get $s)) (v128.load offset=16 (local.get $s)))))
      (local.set $hi (call $bf16_round (call $f64x4_to_f32_odd (v128.load offset=32 (local.get $s)) (v128.load offset=48 (local.get $s)))))
      (local.set $cnt (i32x4.add (local.get $cnt)
        (i32x4.add (call $special16 (local.get $lo) (i32.const 0x7f80)) (call $special16 (local.get $hi) (i32.const 0x7f80)))))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u (local.get $lo) (local.get $hi)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $x (v128.load64_splat (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3)))))
      (local.set $one (call $bf16_round (call $f64x4_to_f32_odd (local.get $x) (local.get $x))))
      (local.set $cnt (i32x4.add (local.get $cnt) (v128.and (call $special16 (local.get $one) (i32.const 0x7f80)) (v128.const i32x4 -1 0 0 0))))
      (i32.store16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1))) (i32x4.extract_lane 0 (local.get $one)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (i32.sub (i32.const 0) (call $sum_lanes (local.get $cnt))))

  (func (export "f64_to_f16") (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32) (local $s i32) (local $lo v128) (local $hi v128) (local $cnt v128) (local $one v128) (local $x v128)
    (local.set $end (i32.and (local.get $n) (i32.const -8)))
    (block $done (loop $body
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3))))
      (local.set $lo (call $f16_round (call $f64x4_to_f32_odd (v128.load (local.get $s)) (v128.load offset=16 (local.get $s)))))
      (local.set $hi (call $f16_round (call $f64x4_to_f32_odd (v128.load offset=32 (local.get $s)) (v128.load offset=48 (local.get $s)))))
      (local.set $cnt (i32x4.add (local.get $cnt)
        (i32x4.add (call $special16 (local.get $lo) (i32.const 0x7c00)) (call $special16 (local.get $hi) (i32.const 0x7c00)))))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u (local.get $lo) (local.get $hi)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $body)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $x (v128.load64_splat (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 3)))))
      (local.set $one (call $f16_round (call $f64x4_to_f32_odd (local.get $x) (local.get $x))))
      (local.set $cnt (i32x4.add (local.get $cnt) (v128.and (call $special16 (local.get $one) (i32.const 0x7c00)) (v128.const i32x4 -1 0 0 0))))
      (i32.store16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1))) (i32x4.extract_lane 0 (local.get $one)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))
    (i32.sub (i32.const 0) (call $sum_lanes (local.get $cnt))))

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
