;; Single-precision GEMM kernels, WebAssembly SIMD128 (f32x4), GotoBLAS structure.
;;
;; The driver (src/nn/kernels/wasm/driver.ts) cuts C into blocks; for each block it calls
;; pack_a / pack_b to copy op(A) and op(B) into contiguous, zero-padded panels, then
;; `macro`, which walks the panels with a 4x8 register-blocked micro-kernel.
;;
;; Why 4x8: 8 accumulators (4 rows x two f32x4) + two B vectors + one broadcast A value
;; is the largest tile that V8's register allocator keeps in xmm registers for the whole
;; k loop. Measured per CPU-second on Zen5 / Node 20: 4x8 ~40 GFLOP/s, while 6x8, 5x8,
;; 4x12 and 3x16 spill accumulators to the stack inside the loop and drop to ~25.
;;
;; All addresses are byte offsets into the one shared memory; leading dimensions are in
;; elements. Panels are zero-padded to full 4 / 8 so the micro-kernel never branches in
;; its k loop; edge tiles go through a scratch tile and a scalar copy-out.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; op(A) block of mc x kc -> panels of 4 rows, panel p at dst + p*kc*16, element
  ;; (r, k) of a panel at k*16 + r*4. op(A)[i][k] is src[i*ld + k], or src[k*ld + i]
  ;; when trans.
  (func (export "pack_a")
    (param $trans i32) (param $src i32) (param $ld i32) (param $mc i32) (param $kc i32) (param $dst i32)
    (local $i i32) (local $r i32) (local $k i32) (local $rows i32) (local $s i32) (local $d i32)
    (local.set $ld (i32.shl (local.get $ld) (i32.const 2)))
    (block $done (loop $panels
      (br_if $done (i32.ge_u (local.get $i) (local.get $mc)))
      (local.set $rows (i32.sub (local.get $mc) (local.get $i)))
      (if (i32.gt_u (local.get $rows) (i32.const 4)) (then (local.set $rows (i32.const 4))))
      (local.set $d (i32.add (local.get $dst) (i32.mul (local.get $i) (i32.shl (local.get $kc) (i32.const 2)))))
      (if (local.get $trans)
        (then
          ;; the 4 values of one k are contiguous in memory
          (local.set $s (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))
          (local.set $k (i32.const 0))
          (if (i32.eq (local.get $rows) (i32.const 4))
            (then (loop $kf
              (v128.store (local.get $d) (v128.load (local.get $s)))
              (local.set $s (i32.add (local.get $s) (local.get $ld)))
              (local.set $d (i32.add (local.get $d) (i32.const 16)))
              (br_if $kf (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc)))))
            (else (loop $ke
              (local.set $r (i32.const 0))
              (loop $re
                (f32.store (i32.add (local.get $d) (i32.shl (local.get $r) (i32.const 2)))
                  (if (result f32) (i32.lt_u (local.get $r) (local.get $rows))
                    (then (f32.load (i32.add (local.get $s) (i32.shl (local.get $r) (i32.const 2)))))
                    (else (f32.const 0))))
                (br_if $re (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 1))) (i32.const 4))))
              (local.set $s (i32.add (local.get $s) (local.get $ld)))
              (local.set $d (i32.add (local.get $d) (i32.const 16)))
              (br_if $ke (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc)))))))
        (else
          ;; one row of op(A) is contiguous: copy it into column r of the panel
          (local.set $r (i32.const 0))
          (loop $rn
            (local.set $s (i32.add (local.get $src) (i32.mul (i32.add (local.get $i) (local.get $r)) (local.get $ld))))
            (local.set $k (i32.const 0))
            (local.set $d (i32.add (local.get $dst)
              (i32.add (i32.mul (local.get $i) (i32.shl (local.get $kc) (i32.const 2))) (i32.shl (local.get $r) (i32.const 2)))))
            (if (i32.lt_u (local.get $r) (local.get $rows))
              (then (loop $kn
                (f32.store (local.get $d) (f32.load (local.get $s)))
                (local.set $s (i32.add (local.get $s) (i32.const 4)))
                (local.set $d (i32.add (local.get $d) (i32.const 16)))
                (br_if $kn (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc)))))
              (else (loop $kz
                (f32.store (local.get $d) (f32.const 0))
                (local.set $d (i32.add (local.get $d) (i32.const 16)))
                (br_if $kz (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc))))))
            (br_if $rn (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 1))) (i32.const 4))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $panels))))

  ;; op(B) block of kc x nc -> panels of 8 columns, panel q at dst + q*kc*32, element
  ;; (k, c) of a panel at k*32 + c*4. op(B)[k][j] is src[k*ld + j], or src[j*ld + k]
  ;; when trans.
  (func (export "pack_b")
    (param $trans i32) (param $src i32) (param $ld i32) (param $kc i32) (param $nc i32) (param $dst i32)
    (local $j i32) (local $c i32) (local $k i32) (local $cols i32) (local $s i32) (local $d i32)
    (local.set $ld (i32.shl (local.get $ld) (i32.const 2)))
    (block $done (loop $panels
      (br_if $done (i32.ge_u (local.get $j) (local.get $nc)))
      (local.set $cols (i32.sub (local.get $nc) (local.get $j)))
      (if (i32.gt_u (local.get $cols) (i32.const 8)) (then (local.set $cols (i32.const 8))))
      (if (local.get $trans)
        (then
          ;; one column of op(B) is contiguous: copy it into column c of the panel
          (local.set $c (i32.const 0))
          (loop $ct
            (local.set $s (i32.add (local.get $src) (i32.mul (i32.add (local.get $j) (local.get $c)) (local.get $ld))))
            (local.set $d (i32.add (local.get $dst)
              (i32.add (i32.mul (local.get $j) (i32.shl (local.get $kc) (i32.const 2))) (i32.shl (local.get $c) (i32.const 2)))))
            (local.set $k (i32.const 0))
            (if (i32.lt_u (local.get $c) (local.get $cols))
              (then (loop $kt
                (f32.store (local.get $d) (f32.load (local.get $s)))
                (local.set $s (i32.add (local.get $s) (i32.const 4)))
                (local.set $d (i32.add (local.get $d) (i32.const 32)))
                (br_if $kt (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc)))))
              (else (loop $kz
                (f32.store (local.get $d) (f32.const 0))
                (local.set $d (i32.add (local.get $d) (i32.const 32)))
                (br_if $kz (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc))))))
            (br_if $ct (i32.lt_u (local.tee $c (i32.add (local.get $c) (i32.const 1))) (i32.const 8)))))
        (else
          ;; the 8 values of one k are contiguous in memory
          (local.set $s (i32.add (local.get $src) (i32.shl (local.get $j) (i32.const 2))))
          (local.set $d (i32.add (local.get $dst) (i32.mul (local.get $j) (i32.shl (local.get $kc) (i32.const 2)))))
          (local.set $k (i32.const 0))
          (if (i32.eq (local.get $cols) (i32.const 8))
            (then (loop $kf
              (v128.store (local.get $d) (v128.load (local.get $s)))
              (v128.store offset=16 (local.get $d) (v128.load offset=16 (local.get $s)))
              (local.set $s (i32.add (local.get $s) (local.get $ld)))
              (local.set $d (i32.add (local.get $d) (i32.const 32)))
              (br_if $kf (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc)))))
            (else (loop $ke
              (local.set $c (i32.const 0))
              (loop $ce
                (f32.store (i32.add (local.get $d) (i32.shl (local.get $c) (i32.const 2)))
                  (if (result f32) (i32.lt_u (local.get $c) (local.get $cols))
                    (then (f32.load (i32.add (local.get $s) (i32.shl (local.get $c) (i32.const 2)))))
                    (else (f32.const 0))))
                (br_if $ce (i32.lt_u (local.tee $c (i32.add (local.get $c) (i32.const 1))) (i32.const 8))))
              (local.set $s (i32.add (local.get $s) (local.get $ld)))
              (local.set $d (i32.add (local.get $d) (i32.const 32)))
              (br_if $ke (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kc))))))))
      (local.set $j (i32.add (local.get $j) (i32.const 8)))
      (br $panels))))

  ;; tile = panel(A) * panel(B) over kc (>= 1) steps: a 4x8 block, rows 32 bytes apart.
  ;; The accumulators go to memory rather than straight into C because any call made
  ;; while they are live makes V8 spill them on every trip through the k loop.
  (func $micro (param $kc i32) (param $pa i32) (param $pb i32) (param $tile i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (loop $k
      (local.set $b0 (v128.load (local.get $pb)))
      (local.set $b1 (v128.load offset=16 (local.get $pb)))
      (local.set $a (v128.load32_splat (local.get $pa)))
      (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $a (v128.load32_splat offset=4 (local.get $pa)))
      (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $a (v128.load32_splat offset=8 (local.get $pa)))
      (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $a (v128.load32_splat offset=12 (local.get $pa)))
      (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $pa (i32.add (local.get $pa) (i32.const 16)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
      (br_if $k (local.tee $kc (i32.sub (local.get $kc) (i32.const 1)))))
    (v128.store offset=0 (local.get $tile) (local.get $c00))
    (v128.store offset=16 (local.get $tile) (local.get $c01))
    (v128.store offset=32 (local.get $tile) (local.get $c10))
    (v128.store offset=48 (local.get $tile) (local.get $c11))
    (v128.store offset=64 (local.get $tile) (local.get $c20))
    (v128.store offset=80 (local.get $tile) (local.get $c21))
    (v128.store offset=96 (local.get $tile) (local.get $c30))
    (v128.store offset=112 (local.get $tile) (local.get $c31)))

  ;; C = alpha*tile + beta*C on rows x cols of C; with beta == 0 the old C (even NaN) is
  ;; never read. A full 4x8 tile goes vector by vector, an edge tile element by element.
  (func $update (param $c i32) (param $ldc i32) (param $tile i32)
    (param $alpha f32) (param $beta f32) (param $rows i32) (param $cols i32)
    (local $va v128) (local $vb v128) (local $keep i32) (local $r i32) (local $q i32) (local $t f32) (local $p i32)
    (local.set $va (f32x4.splat (local.get $alpha)))
    (local.set $vb (f32x4.splat (local.get $beta)))
    (local.set $keep (f32.ne (local.get $beta) (f32.const 0)))
    (if (i32.and (i32.eq (local.get $rows) (i32.const 4)) (i32.eq (local.get $cols) (i32.const 8)))
      (then (loop $rf
        (if (local.get $keep)
          (then
            (v128.store (local.get $c) (f32x4.add (f32x4.mul (v128.load (local.get $tile)) (local.get $va))
              (f32x4.mul (v128.load (local.get $c)) (local.get $vb))))
            (v128.store offset=16 (local.get $c) (f32x4.add (f32x4.mul (v128.load offset=16 (local.get $tile)) (local.get $va))
              (f32x4.mul (v128.load offset=16 (local.get $c)) (local.get $vb)))))
          (else
            (v128.store (local.get $c) (f32x4.mul (v128.load (local.get $tile)) (local.get $va)))
            (v128.store offset=16 (local.get $c) (f32x4.mul (v128.load offset=16 (local.get $tile)) (local.get $va)))))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (local.set $tile (i32.add (local.get $tile) (i32.const 32)))
        (br_if $rf (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 1))) (i32.const 4)))))
      (else (loop $r
        (local.set $q (i32.const 0))
        (loop $q
          (local.set $t (f32.mul (local.get $alpha)
            (f32.load (i32.add (local.get $tile) (i32.shl (local.get $q) (i32.const 2))))))
          (local.set $p (i32.add (local.get $c) (i32.shl (local.get $q) (i32.const 2))))
          (f32.store (local.get $p)
            (if (result f32) (local.get $keep)
              (then (f32.add (local.get $t) (f32.mul (local.get $beta) (f32.load (local.get $p)))))
              (else (local.get $t))))
          (br_if $q (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 1))) (local.get $cols))))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (local.set $tile (i32.add (local.get $tile) (i32.const 32)))
        (br_if $r (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 1))) (local.get $rows)))))))

  ;; C block (mc x nc at byte address c, row stride ldc elements) from packed panels.
  (func (export "macro")
    (param $mc i32) (param $nc i32) (param $kc i32) (param $pa i32) (param $pb i32)
    (param $c i32) (param $ldc i32) (param $alpha f32) (param $beta f32) (param $tile i32)
    (local $i i32) (local $j i32) (local $rows i32) (local $cols i32) (local $ldcb i32) (local $panelA i32) (local $panelB i32)
    (local.set $ldcb (i32.shl (local.get $ldc) (i32.const 2)))
    (local.set $panelA (i32.mul (local.get $kc) (i32.const 16)))
    (local.set $panelB (i32.mul (local.get $kc) (i32.const 32)))
    (loop $jl
      (local.set $cols (i32.sub (local.get $nc) (local.get $j)))
      (if (i32.gt_u (local.get $cols) (i32.const 8)) (then (local.set $cols (i32.const 8))))
      (local.set $i (i32.const 0))
      (loop $il
        (local.set $rows (i32.sub (local.get $mc) (local.get $i)))
        (if (i32.gt_u (local.get $rows) (i32.const 4)) (then (local.set $rows (i32.const 4))))
        (call $micro (local.get $kc)
          (i32.add (local.get $pa) (i32.mul (i32.shr_u (local.get $i) (i32.const 2)) (local.get $panelA)))
          (i32.add (local.get $pb) (i32.mul (i32.shr_u (local.get $j) (i32.const 3)) (local.get $panelB)))
          (local.get $tile))
        (call $update
          (i32.add (local.get $c) (i32.add (i32.mul (local.get $i) (local.get $ldcb)) (i32.shl (local.get $j) (i32.const 2))))
          (local.get $ldcb) (local.get $tile) (local.get $alpha) (local.get $beta) (local.get $rows) (local.get $cols))
        (br_if $il (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 4))) (local.get $mc))))
      (br_if $jl (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 8))) (local.get $nc)))))
)
